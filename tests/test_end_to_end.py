"""train -> export -> eval through the CLI, restart, learning, bad inputs."""

import csv
import glob
import os
import shutil

import ase.io
import numpy as np
import pytest
import yaml

from atomtrain.cli import main


RESOURCES = os.path.join(os.path.dirname(__file__), "resources")
SMALL = [
    "-o", "architecture.model.bpnn.num_neurons_per_layer=16",
    "-o", "architecture.model.soap.max_angular=2",
    "-o", "architecture.model.soap.max_radial=4",
]  # fmt: skip


def _write_options(path, training_set, epochs=2, **extra):
    options = {
        "architecture": {"name": "soap_bpnn", "training": {"num_epochs": epochs}},
        "training_set": training_set,
        "validation_set": 0.2,
        "seed": 1,
        **extra,
    }
    with open(path, "w") as file:
        yaml.safe_dump(options, file)


@pytest.fixture
def ethanol(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    frames = ase.io.read(os.path.join(RESOURCES, "ethanol_reduced_100.xyz"), ":30")
    ase.io.write("ethanol.xyz", frames)
    targets = {"energy": {"key": "energy", "unit": "kcal/mol", "forces": True}}
    _write_options("options.yaml", {"systems": "ethanol.xyz", "targets": targets})
    with open("eval.yaml", "w") as file:
        yaml.safe_dump({"systems": "ethanol.xyz", "targets": targets}, file)
    return tmp_path


def _run_dir():
    (folder,) = glob.glob("outputs/*/*")
    return folder


def test_train_export_eval_ethanol(ethanol):
    assert main(["train", "options.yaml", *SMALL]) == 0
    run = _run_dir()
    for name in ("train.log", "train.csv", "options_restart.yaml", "model.ckpt",
                 "model.pt"):  # fmt: skip
        assert os.path.exists(os.path.join(run, name)), name
    assert os.path.exists("model.ckpt") and os.path.exists("model.pt")
    expanded = yaml.safe_load(open(os.path.join(run, "options_restart.yaml")))
    assert expanded["architecture"]["training"]["batch_size"] == 8  # default filled
    assert main(["export", "model.ckpt", "-o", "again.pt"]) == 0
    assert main(["eval", "again.pt", "eval.yaml", "-o", "pred.xyz"]) == 0
    predicted = ase.io.read("pred.xyz", ":")
    reference = ase.io.read("ethanol.xyz", ":")
    assert len(predicted) == 30
    energies = np.array([a.get_potential_energy() for a in predicted])
    # kcal/mol were converted to eV on reading: ethanol is about -4209.7 eV
    expected = np.array([a.get_potential_energy() for a in reference]) * 0.0433641
    assert np.abs(energies - expected).max() < 5.0
    assert predicted[0].get_forces().shape == (9, 3)
    metrics = yaml.safe_load(open("pred_metrics.json"))
    assert metrics["forces RMSE (meV/Å)"] > 0


def test_exported_model_in_ase_matches_eval(ethanol):
    from metatomic_ase import MetatomicCalculator

    assert main(["train", "options.yaml", *SMALL, "-o",
                 "architecture.training.num_epochs=1"]) == 0  # fmt: skip
    assert main(["eval", "model.pt", "eval.yaml", "-o", "pred.xyz"]) == 0
    calculator = MetatomicCalculator("model.pt")
    for atoms in ase.io.read("pred.xyz", ":3"):
        copy = atoms.copy()
        copy.calc = calculator
        assert copy.get_potential_energy() == pytest.approx(
            atoms.get_potential_energy(), abs=2e-3
        )
        np.testing.assert_allclose(copy.get_forces(), atoms.get_forces(), atol=2e-4)


def test_carbon_periodic_with_force_key(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    frames = ase.io.read(os.path.join(RESOURCES, "carbon_reduced_100.xyz"), ":20")
    ase.io.write("carbon.xyz", frames)
    targets = {"energy": {"key": "energy", "forces": {"key": "force"}}}
    _write_options("options.yaml", {"systems": "carbon.xyz", "targets": targets})
    assert main(["train", "options.yaml", *SMALL]) == 0
    assert main(["eval", "model.pt", "carbon.xyz", "-o", "pred.xyz"]) == 0
    predicted = ase.io.read("pred.xyz", ":")
    assert predicted[0].get_stress(voigt=False).shape == (3, 3)  # periodic: stress


def _csv(path):
    with open(path) as file:
        return list(csv.DictReader(file))


def test_restart_continues_epochs_and_schedule(ethanol):
    assert main(["train", "options.yaml", *SMALL, "--output-dir", "full", "-o",
                 "architecture.training.num_epochs=4"]) == 0  # fmt: skip
    assert main(["train", "options.yaml", *SMALL, "--output-dir", "first"]) == 0
    assert main(["train", "options.yaml", *SMALL, "--output-dir", "second", "-o",
                 "architecture.training.num_epochs=4", "--restart",
                 "first/model.ckpt"]) == 0  # fmt: skip
    full, second = _csv("full/train.csv"), _csv("second/train.csv")
    assert [row["epoch"] for row in second] == ["3", "4"]
    for a, b in zip(full[2:], second):
        assert float(a["learning_rate"]) == pytest.approx(float(b["learning_rate"]))


def test_training_beats_composition_baseline(ethanol):
    frames = ase.io.read(os.path.join(RESOURCES, "ethanol_reduced_100.xyz"), ":")
    ase.io.write("ethanol.xyz", frames)
    overrides = [
        "architecture.training.num_epochs=25",
        "architecture.training.learning_rate=0.005",
        "architecture.model.bpnn.num_neurons_per_layer=32",
    ]
    assert main(["train", "options.yaml"] + [f"-o{o}" for o in overrides]) == 0
    last = _csv(os.path.join(_run_dir(), "train.csv"))[-1]
    reference = np.concatenate([a.get_forces() for a in frames]) * 43.3641  # meV/Å
    baseline_rmse = np.sqrt(np.mean(reference**2))  # baseline predicts no force
    assert float(last["val forces RMSE (meV/Å)"]) < 0.6 * baseline_rmse


BAD_CASES = {
    "missing data file": (
        {"systems": "nowhere.xyz", "targets": {"energy": {}}},
        "nowhere.xyz",
    ),
    "missing key": (
        {"systems": "ethanol.xyz", "targets": {"energy": {"key": "U0"}}},
        "structure 0 of 'ethanol.xyz' has no key 'U0'",
    ),
    "unknown unit": (
        {"systems": "ethanol.xyz", "targets": {"energy": {"unit": "kcal/mool"}}},
        "kcal/mool",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_CASES))
def test_bad_training_sets(ethanol, capsys, case):
    training_set, message = BAD_CASES[case]
    _write_options("bad.yaml", training_set)
    assert main(["train", "bad.yaml"]) == 1
    error = capsys.readouterr().err
    assert message in error and "Traceback" not in error


def test_bad_options(ethanol, capsys):
    options = yaml.safe_load(open("options.yaml"))
    cases = [
        ({"architecture": {"name": "soap_bpn"}}, "Did you mean 'soap_bpnn'"),
        ({"validation_set": -0.1}, "validation_set"),
        ({"validation_set": 0.6, "test_set": 0.5}, "must be below 1"),
        ({"trainig_set": 1}, "Did you mean 'training_set'"),
        (
            {"architecture": {"name": "soap_bpnn", "training": {"num_epoch": 1}}},
            "Did you mean 'num_epochs'",
        ),  # fmt: skip
    ]
    for change, message in cases:
        with open("bad.yaml", "w") as file:
            yaml.safe_dump({**options, **change}, file)
        assert main(["train", "bad.yaml"]) == 1
        error = capsys.readouterr().err
        assert message in error, (change, error)


def test_bad_files(ethanol, capsys):
    with open("garbage.xyz", "wb") as file:
        file.write(b"\x00\x01 not an xyz file\n")
    open("empty.xyz", "w").close()
    shutil.copy("options.yaml", "o.yaml")
    for path in ("garbage.xyz", "empty.xyz"):
        _write_options("bad.yaml", {"systems": path, "targets": {"energy": {}}})
        assert main(["train", "bad.yaml"]) == 1
        assert path in capsys.readouterr().err
    assert main(["export", "garbage.xyz"]) == 1
    assert "not a readable atomtrain checkpoint" in capsys.readouterr().err
    assert main(["eval", "garbage.xyz", "ethanol.xyz"]) == 1
    assert "not an exported metatomic model" in capsys.readouterr().err
    assert main(["train", "missing.yaml"]) == 1
    assert "missing.yaml" in capsys.readouterr().err


def test_checkpoint_of_another_architecture(ethanol, capsys):
    import torch

    assert main(["train", "options.yaml", *SMALL, "-o",
                 "architecture.training.num_epochs=1"]) == 0  # fmt: skip
    checkpoint = torch.load("model.ckpt", weights_only=True)
    checkpoint["architecture_name"] = "other_arch"
    torch.save(checkpoint, "other.ckpt")
    assert main(["train", "options.yaml", "--restart", "other.ckpt"]) == 1
    assert "written by architecture 'other_arch'" in capsys.readouterr().err


def test_qm9_per_structure_scalar_targets(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    frames = ase.io.read(os.path.join(RESOURCES, "qm9_reduced_100.xyz"), ":40")
    ase.io.write("qm9.xyz", frames)
    targets = {
        "U0": {"quantity": "energy", "unit": "hartree"},
        "mu": {"unit": "D"},
    }
    _write_options("options.yaml", {"systems": "qm9.xyz", "targets": targets})
    assert main(["train", "options.yaml", *SMALL]) == 0
    with open("eval.yaml", "w") as file:
        yaml.safe_dump({"systems": "qm9.xyz", "targets": targets}, file)
    assert main(["eval", "model.pt", "eval.yaml", "-o", "pred.xyz"]) == 0
    predicted = ase.io.read("pred.xyz", ":")
    u0 = np.array([a.info["U0"] for a in predicted])
    reference = np.array([a.info["U0"] for a in frames]) * 27.211386
    # Hartree converted to eV; the composition baseline alone is within ~1 eV
    assert np.abs(u0 - reference).mean() < 2.0
    assert all(np.isfinite(a.info["mu"]) for a in predicted)
    metrics = yaml.safe_load(open("pred_metrics.json"))
    assert "mu MAE (D)" in metrics and "U0 MAE (meV/atom)" in metrics
