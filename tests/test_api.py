"""The Python API: the example of docs/api.md runs as written, and what it
returns is what the files and the command line say."""

import json
import os
import re
import shutil

import ase.io
import numpy as np
import pytest
import yaml

from atomtrain.cli import main
from atomtrain.errors import UserError


ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
RESOURCES = os.path.join(ROOT, "tests", "resources")


def docs_example() -> str:
    with open(os.path.join(ROOT, "docs", "api.md")) as file:
        blocks = re.findall(r"```python\n(.*?)```", file.read(), re.S)
    return max(blocks, key=len)  # the example, not the one-line import


@pytest.fixture(scope="module")
def example(tmp_path_factory):
    """The namespace left by running the documented example."""
    folder = tmp_path_factory.mktemp("api")
    shutil.copy(os.path.join(RESOURCES, "ethanol_reduced_100.xyz"), folder)
    cwd = os.getcwd()
    os.chdir(folder)
    try:
        namespace = {}
        exec(compile(docs_example(), "docs/api.md", "exec"), namespace)
    finally:
        os.chdir(cwd)
    namespace["folder"] = folder
    return namespace


def test_training_returns_the_run_and_its_files(example):
    run, folder = example["run"], example["folder"]
    assert run.run_dir == "run"
    for path in (run.checkpoint, run.exported):
        assert os.path.exists(folder / path)
        assert os.path.exists(folder / os.path.basename(path))  # copied to cwd
    assert run.options["architecture"]["training"]["num_epochs"] == 2
    assert set(run.metrics) >= {"test"}
    with open(folder / "run" / "train.log") as file:
        log = file.read()
    logged = float(re.search(r"forces\s+test\s+(\S+)\s+\S+\s+meV/Å", log)[1])
    assert run.metrics["test"]["forces MAE (meV/Å)"] == pytest.approx(logged, rel=1e-3)


def test_predictions_are_atoms_that_match_the_exported_model(example):
    from metatomic_ase import MetatomicCalculator

    result, folder = example["result"], example["folder"]
    assert result.n_structures == len(result.predictions) == 30
    calculator = MetatomicCalculator(str(folder / example["run"].exported))
    for atoms in result.predictions[:3]:
        copy = atoms.copy()
        copy.calc = calculator
        assert copy.get_potential_energy() == pytest.approx(
            atoms.get_potential_energy(), abs=2e-3
        )
        np.testing.assert_allclose(copy.get_forces(), atoms.get_forces(), atol=2e-4)
    written = ase.io.read(folder / "predictions.xyz", ":")
    for a, b in zip(written, result.predictions):
        assert a.get_potential_energy() == pytest.approx(b.get_potential_energy())


def test_a_checkpoint_in_memory_scores_as_its_export(example):
    in_memory, exported = example["in_memory"].metrics, example["result"].metrics
    assert set(in_memory) == set(exported) and len(exported) == 4
    for key, value in exported.items():
        assert in_memory[key] == pytest.approx(value, rel=1e-4), key
    assert os.path.exists(example["folder"] / "again.pt")


def test_evaluate_matches_the_command_line(example, monkeypatch):
    folder = example["folder"]
    monkeypatch.chdir(folder)
    targets = {"energy": {"key": "energy", "unit": "kcal/mol", "forces": True}}
    with open("eval.yaml", "w") as file:
        yaml.safe_dump({"systems": "ethanol.xyz", "targets": targets}, file)
    assert main(["eval", "model.pt", "eval.yaml", "-o", "cli.xyz"]) == 0
    with open("cli_metrics.json") as file:
        assert json.load(file) == pytest.approx(example["result"].metrics, rel=1e-9)


def test_atoms_in_memory_are_predicted(example):
    from atomtrain import evaluate

    frames = ase.io.read(example["folder"] / "ethanol.xyz", ":4")
    result = evaluate(str(example["folder"] / "model.pt"), frames)
    assert result.metrics == {}  # Atoms carry no references to score
    expected = example["result"].predictions[:4]
    for got, want in zip(result.predictions, expected):
        assert got.get_potential_energy() == pytest.approx(want.get_potential_energy())


def test_options_from_a_file_with_overrides_and_bad_options(example, tmp_path):
    from atomtrain import train

    options = dict(example["options"])
    options["training_set"] = {
        "systems": str(example["folder"] / "ethanol.xyz"),
        "targets": example["targets"],
    }
    path = tmp_path / "options.yaml"
    path.write_text(yaml.safe_dump(options))
    with pytest.raises(UserError, match="num_epoch"):
        train(str(path), ["architecture.training.num_epoch=1"])
    run = train(
        path,
        ["architecture.training.num_epochs=1"],
        output_dir=str(tmp_path / "run"),
        copy_to=None,
    )
    assert run.options["architecture"]["training"]["num_epochs"] == 1
    assert os.path.exists(run.exported) and not os.path.exists(tmp_path / "model.pt")
