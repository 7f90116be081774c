"""``atomtrain train`` with ``uncertainty: true`` and ``atomtrain calibrate``:
both write a model with metatomic's uncertainty outputs, and they agree."""

import glob
import importlib.util
import os

import ase.io
import pytest
import torch
import yaml
from metatomic.torch import ModelEvaluationOptions, ModelOutput, load_atomistic_model

from atomtrain.cli import main
from atomtrain.data.systems import compute_neighbors, make_system
from atomtrain.errors import UserError
from atomtrain.testing.fixtures import read_bundled


RESOURCES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "resources")
TARGETS = {"energy": {"key": "energy", "unit": "kcal/mol", "forces": {"key": "forces"}}}


def write_yaml(path, data):
    with open(path, "w") as file:
        yaml.safe_dump(data, file)


@pytest.fixture()
def folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    frames = ase.io.read(os.path.join(RESOURCES, "ethanol_reduced_100.xyz"), ":40")
    ase.io.write("ethanol.xyz", frames[:30])
    ase.io.write("calibration.xyz", frames[30:])
    write_yaml(
        "options.yaml",
        {
            "architecture": {
                "name": "soap_bpnn",
                "model": {
                    "soap": {"max_angular": 2, "max_radial": 3},
                    "bpnn": {"num_neurons_per_layer": 16},
                },
                "training": {"num_epochs": 2},
            },
            "training_set": {"systems": "ethanol.xyz", "targets": TARGETS},
            "validation_set": {"systems": "calibration.xyz", "targets": TARGETS},
            "seed": 7,
            "base_precision": 64,
            "uncertainty": {"ensemble_members": 4},
        },
    )
    write_yaml("calibration.yaml", {"systems": "calibration.xyz", "targets": TARGETS})
    return tmp_path


def sigmas(path):
    model = load_atomistic_model(path)
    structures = read_bundled("ethanol")[:3]
    requests = model.requested_neighbor_lists()
    compute_neighbors(structures, requests)
    systems = [make_system(s, requests, torch.float64, "cpu")[0] for s in structures]
    outputs = {
        "energy": ModelOutput(sample_kind="system"),
        "energy_uncertainty": ModelOutput(sample_kind="system"),
        "energy_ensemble": ModelOutput(sample_kind="system"),
    }
    options = ModelEvaluationOptions(length_unit="angstrom", outputs=outputs)
    return {
        k: v.block().values
        for k, v in model(systems, options, check_consistency=True).items()
    }


def test_train_with_uncertainty_then_calibrate(folder):
    assert main(["train", "options.yaml"]) == 0
    trained = sigmas("model.pt")
    assert trained["energy_ensemble"].shape == (3, 4)
    assert float(trained["energy_uncertainty"].min()) > 0
    # the same checkpoint, training set (from options_restart.yaml) and
    # calibration set (the validation set of training): the same outputs
    run = glob.glob("outputs/*/*/model.ckpt")[0]
    command = ["calibrate", run, "calibration.yaml", "-o", "other.pt"]
    assert main(command + ["--members", "4"]) == 0
    other = sigmas("other.pt")
    for name in ("energy", "energy_uncertainty", "energy_ensemble"):
        torch.testing.assert_close(other[name], trained[name])
    # the copy of the checkpoint has no options_restart.yaml beside it: the
    # training options name the same training split
    copied = ["calibrate", "model.ckpt", "calibration.yaml", "-o", "copy.pt"]
    assert main(copied + ["--members", "4", "--train", "options.yaml"]) == 0
    again = sigmas("copy.pt")
    for name in ("energy", "energy_uncertainty", "energy_ensemble"):
        torch.testing.assert_close(again[name], trained[name])
    # a covariance over other structures changes the uncertainty, not the energy
    assert main(command + ["--train", "calibration.xyz"]) == 0
    third = sigmas("other.pt")
    torch.testing.assert_close(third["energy"], trained["energy"])
    assert third["energy_ensemble"].shape == (3, 32)
    assert not torch.allclose(
        third["energy_uncertainty"], trained["energy_uncertainty"]
    )


def test_train_and_calibrate_a_shallow_ensemble(folder):
    """uncertainty: {method: shallow_ensemble} in training and calibrate
    --method shallow_ensemble write the same members, whose spread is sigma."""
    import json

    with open("options.yaml") as file:
        options = yaml.safe_load(file)
    options["uncertainty"] = {
        "method": "shallow_ensemble",
        "ensemble_members": 4,
        "epochs": 20,
    }
    write_yaml("options.yaml", options)
    assert main(["train", "options.yaml"]) == 0
    trained = sigmas("model.pt")
    spread = trained["energy_ensemble"] - trained["energy"]
    torch.testing.assert_close(
        trained["energy_uncertainty"], spread.square().mean(1, keepdim=True).sqrt()
    )
    extra = load_atomistic_model("model.pt").metadata().extra
    assert json.loads(extra["atomtrain.uncertainty"])["energy"]["method"] == (
        "shallow_ensemble"
    )
    run = glob.glob("outputs/*/*/model.ckpt")[0]
    command = ["calibrate", run, "calibration.yaml", "-o", "other.pt"]
    command += ["--members", "4", "--method", "shallow_ensemble", "--epochs", "20"]
    assert main(command) == 0
    other = sigmas("other.pt")
    for name in ("energy", "energy_uncertainty", "energy_ensemble"):
        torch.testing.assert_close(other[name], trained[name])


def test_eval_reports_calibration_and_writes_sigmas(folder, caplog):
    import json
    import logging

    from atomtrain.uncertainty import metrics

    caplog.set_level(logging.INFO, logger="atomtrain")
    assert main(["train", "options.yaml", "-o", "test_set=0.2"]) == 0
    # the end of training scores the calibrated model on the test set
    assert "on the 6 test structures" in caplog.text
    caplog.clear()
    caplog.set_level(logging.INFO, logger="atomtrain")
    command = ["eval", "model.pt", "calibration.yaml", "-o", "predictions.xyz"]
    assert main(command + ["--plot"]) == 0
    assert "uncertainty calibration" in caplog.text
    assert "Spearman(|error|, sigma)" in caplog.text
    frames = ase.io.read("predictions.xyz", ":")
    references = ase.io.read("calibration.xyz", ":")
    kcal = 0.0433641043
    errors = [
        f.get_potential_energy() - r.get_potential_energy() * kcal
        for f, r in zip(frames, references)
    ]
    sigmas = [f.info["energy_uncertainty"] for f in frames]
    assert min(sigmas) > 0
    with open("predictions_metrics.json") as file:
        report = json.load(file)["uncertainty"]["energy"]
    expected = metrics.calibration_report(errors, sigmas)
    for key, value in expected.items():
        assert report[key] == pytest.approx(value, rel=1e-5, abs=1e-8)
    if importlib.util.find_spec("matplotlib"):
        assert os.path.exists("predictions_uncertainty.png")


def test_calibrate_refuses_bad_inputs(folder):
    from atomtrain.cli import build_parser
    from atomtrain.cli.calibrate import run as calibrate

    parser = build_parser()
    args = parser.parse_args(["calibrate", "missing.ckpt", "calibration.yaml"])
    with pytest.raises(UserError, match="missing.ckpt"):
        calibrate(args)
    assert main(["train", "options.yaml"]) == 0
    for extra, message in (
        (["-o", "model.ckpt2"], "must end in .pt"),
        (["--members", "3"], "even number"),
        (["--train", "nowhere.xyz"], "nowhere.xyz"),
    ):
        args = parser.parse_args(
            ["calibrate", "model.ckpt", "calibration.yaml", *extra]
        )
        with pytest.raises(UserError, match=message):
            calibrate(args)
    # model.ckpt copied out of its run folder has no options_restart.yaml beside
    args = parser.parse_args(["calibrate", "model.ckpt", "calibration.yaml"])
    with pytest.raises(UserError, match="--train"):
        calibrate(args)


def test_md_example_warns_or_stops_on_force_uncertainty(folder):
    import importlib.util
    import sys
    import warnings

    examples = os.path.join(os.path.dirname(RESOURCES), "..", "examples", "md")
    sys.path.insert(0, examples)
    try:
        spec = importlib.util.spec_from_file_location(
            "run_md", os.path.join(examples, "run_md.py")
        )
        run_md = importlib.util.module_from_spec(spec)
        sys.modules["run_md"] = run_md
        spec.loader.exec_module(run_md)
        from uncertainty import ForceUncertainty
    finally:
        sys.path.remove(examples)
        sys.modules.pop("run_md", None)

    assert main(["train", "options.yaml"]) == 0
    monitor = ForceUncertainty("model.pt")
    atoms = ase.io.read("calibration.xyz", 0)
    per_atom = monitor(atoms)
    assert per_atom.shape == (len(atoms),) and per_atom.min() > 0

    def fresh_atoms():
        copy = atoms.copy()
        copy.calc = run_md.calculator("model.pt")
        return copy

    quiet = run_md.run_md(fresh_atoms(), 6, uncertainty=monitor, threshold=1e9,
                          uncertainty_interval=3)  # fmt: skip
    assert quiet.stopped_at_step == -1 and quiet.steps == 6
    assert 0 < quiet.max_force_uncertainty_eV_per_A < 1e9
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        run_md.run_md(fresh_atoms(), 6, uncertainty=monitor, threshold=0.0,
                      uncertainty_interval=3)  # fmt: skip
    assert any("force uncertainty" in str(w.message) for w in caught)
    stopped = run_md.run_md(fresh_atoms(), 6, uncertainty=monitor, threshold=0.0,
                            on_uncertainty="stop", uncertainty_interval=3)  # fmt: skip
    assert stopped.stopped_at_step in (0, 3) and stopped.steps < 6


@pytest.mark.parametrize(
    "section, message",
    [
        ({"ensemble_members": 3}, "ensemble_members"),
        ({"members": 4}, "ensemble_members"),
        ({"method": "bayes"}, "llpr"),
    ],
)
def test_uncertainty_option_refuses_bad_values(folder, capsys, section, message):
    with open("options.yaml") as file:
        options = yaml.safe_load(file)
    options["uncertainty"] = section
    write_yaml("options.yaml", options)
    assert main(["train", "options.yaml"]) == 1
    error = capsys.readouterr().err
    assert "uncertainty" in error and message in error
