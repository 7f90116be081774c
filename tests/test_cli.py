"""End to end through ``atomtrain.cli.main``: train -> export -> eval, restart,
help/version, and a short training that must beat the composition baseline."""

import csv
import glob
import json
import math
import os

import ase.io
import numpy as np
import pytest
import torch
import yaml

from atomtrain import __version__
from atomtrain.cli import main
from atomtrain.training.schedule import LearningRate


RESOURCES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "resources")
KCAL_PER_MOL_IN_EV = 0.0433641
SMALL = [
    "-o",
    "architecture.model.bpnn.num_neurons_per_layer=16",
    "-o",
    "architecture.model.soap.max_angular=2",
    "-o",
    "architecture.model.soap.max_radial=3",
]
ETHANOL_TARGETS = {
    "energy": {"key": "energy", "unit": "kcal/mol", "forces": {"key": "forces"}}
}
CARBON_TARGETS = {"energy": {"key": "energy", "unit": "eV", "forces": {"key": "force"}}}
RUN_FILES = ("train.log", "train.csv", "options_restart.yaml", "model.ckpt", "model.pt")


def write_subset(resource: str, destination: str, index: str) -> list:
    frames = ase.io.read(os.path.join(RESOURCES, resource), index)
    ase.io.write(destination, frames)
    return frames


def write_yaml(path: str, data: dict) -> None:
    with open(path, "w") as file:
        yaml.safe_dump(data, file)


def write_options(path, training_set, epochs=2, **extra) -> None:
    write_yaml(
        path,
        {
            "architecture": {"name": "soap_bpnn", "training": {"num_epochs": epochs}},
            "training_set": training_set,
            "validation_set": 0.2,
            "seed": 7,
            **extra,
        },
    )


def read_csv(path: str) -> list[dict]:
    with open(path, newline="") as file:
        return list(csv.DictReader(file))


def single_run_dir() -> str:
    runs = glob.glob(os.path.join("outputs", "*", "*"))
    assert len(runs) == 1, runs
    return runs[0]


@pytest.fixture
def ethanol(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    frames = write_subset("ethanol_reduced_100.xyz", "ethanol.xyz", ":24")
    write_options(
        "options.yaml", {"systems": "ethanol.xyz", "targets": ETHANOL_TARGETS}
    )
    write_yaml("eval.yaml", {"systems": "ethanol.xyz", "targets": ETHANOL_TARGETS})
    return frames


# ----------------------------------------------------------------- help/version
@pytest.mark.parametrize(
    "argv",
    [["--help"], ["train", "--help"], ["eval", "--help"], ["export", "--help"]],
)
def test_help(argv, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "usage: atomtrain" in out
    if argv[0] != "--help":
        assert argv[0] in out


def test_version(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.strip() == f"atomtrain {__version__}"


def test_no_command_prints_help(capsys):
    assert main([]) == 1
    assert "usage: atomtrain" in capsys.readouterr().out


# ------------------------------------------------------------- train/export/eval
def test_train_export_eval_ethanol(ethanol, capsys):
    assert main(["train", "options.yaml", *SMALL]) == 0
    assert "error" not in capsys.readouterr().err

    run = single_run_dir()
    date, time = run.split(os.sep)[1:]
    assert len(date.split("-")) == 3 and len(time.split("-")) == 3
    for name in RUN_FILES:
        assert os.path.isfile(os.path.join(run, name)), name
    for name in ("model.ckpt", "model.pt"):
        with open(name, "rb") as here, open(os.path.join(run, name), "rb") as there:
            assert here.read() == there.read(), f"{name} is not a copy of the run's"

    with open(os.path.join(run, "train.log")) as file:
        log = file.read()
    assert "Epoch    2" in log and "training finished" in log
    rows = read_csv(os.path.join(run, "train.csv"))
    assert [row["epoch"] for row in rows] == ["1", "2"]
    assert "val forces RMSE (meV/Å)" in rows[0]
    with open(os.path.join(run, "options_restart.yaml")) as file:
        expanded = yaml.safe_load(file)
    energy = expanded["training_set"]["targets"]["energy"]
    assert energy["unit"] == "kcal/mol" and energy["forces"]["key"] == "forces"
    assert expanded["architecture"]["training"]["num_epochs"] == 2
    assert expanded["architecture"]["model"]["bpnn"]["num_neurons_per_layer"] == 16
    assert expanded["architecture"]["training"]["batch_size"] == 8  # a default
    assert expanded["seed"] == 7

    assert main(["export", "model.ckpt", "-o", "other.pt"]) == 0
    assert os.path.isfile("other.pt")

    assert main(["eval", "other.pt", "eval.yaml"]) == 0
    predicted = ase.io.read("predictions.xyz", ":")
    assert len(predicted) == len(ethanol)
    energies = np.array([atoms.get_potential_energy() for atoms in predicted])
    reference = np.array([a.get_potential_energy() for a in ethanol])
    # the file is in kcal/mol (about -97 000), predictions in eV (about -4209)
    assert np.all(np.abs(energies + 4209.0) < 10.0), energies
    assert np.abs(energies - reference * KCAL_PER_MOL_IN_EV).max() < 5.0
    for atoms, original in zip(predicted, ethanol):
        assert atoms.get_forces().shape == (len(original), 3)
        assert np.all(np.isfinite(atoms.get_forces()))
        np.testing.assert_array_equal(atoms.numbers, original.numbers)
        np.testing.assert_allclose(atoms.positions, original.positions, atol=1e-6)

    with open("predictions_metrics.json") as file:
        metrics = json.load(file)
    energy_rmse = [k for k in metrics if "energy" in k and "RMSE" in k]
    force_rmse = [k for k in metrics if "forces" in k and "RMSE" in k]
    assert energy_rmse and force_rmse, metrics
    assert all(math.isfinite(v) and v >= 0 for v in metrics.values())


def test_eval_of_both_exports_agree(ethanol):
    assert (
        main(
            [
                "train",
                "options.yaml",
                *SMALL,
                "-o",
                "architecture.training.num_epochs=1",
            ]
        )
        == 0
    )
    assert main(["export", "model.ckpt", "-o", "other.pt"]) == 0
    assert main(["eval", "model.pt", "ethanol.xyz", "-o", "a.xyz"]) == 0
    assert main(["eval", "other.pt", "ethanol.xyz", "-o", "b.xyz", "-b", "5"]) == 0
    a, b = ase.io.read("a.xyz", ":"), ase.io.read("b.xyz", ":")
    assert len(a) == len(b) == len(ethanol)
    for x, y in zip(a, b):
        assert x.get_potential_energy() == pytest.approx(
            y.get_potential_energy(), abs=1e-3
        )
        np.testing.assert_allclose(x.get_forces(), y.get_forces(), atol=1e-4)
    # a structure file without targets: predictions only, no metrics
    assert not os.path.exists("a_metrics.json")


def test_carbon_periodic_with_force_key(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    frames = write_subset("carbon_reduced_100.xyz", "carbon.xyz", ":12")
    assert all(atoms.pbc.all() for atoms in frames)
    assert "force" in frames[0].arrays
    write_options("options.yaml", {"systems": "carbon.xyz", "targets": CARBON_TARGETS})
    write_yaml("eval.yaml", {"systems": "carbon.xyz", "targets": CARBON_TARGETS})
    assert main(["train", "options.yaml", *SMALL]) == 0
    run = single_run_dir()
    for name in RUN_FILES:
        assert os.path.isfile(os.path.join(run, name)), name
    assert os.path.isfile("model.ckpt") and os.path.isfile("model.pt")

    assert main(["eval", "model.pt", "eval.yaml", "-o", "carbon_pred.xyz"]) == 0
    predicted = ase.io.read("carbon_pred.xyz", ":")
    assert len(predicted) == len(frames)
    for atoms, original in zip(predicted, frames):
        assert atoms.pbc.all()
        np.testing.assert_allclose(atoms.cell.array, original.cell.array, atol=1e-6)
        assert atoms.get_forces().shape == (len(original), 3)
        per_atom = atoms.get_potential_energy() / len(atoms)
        reference = original.get_potential_energy() / len(original)
        assert abs(per_atom - reference) < 2.0  # eV/atom, composition baseline
        assert atoms.get_stress(voigt=False).shape == (3, 3)
    with open("carbon_pred_metrics.json") as file:
        metrics = json.load(file)
    assert any("forces" in k for k in metrics), metrics


# ---------------------------------------------------------------------- restart
def test_restart_continues_epochs_and_schedule(ethanol):
    every_epoch = [*SMALL, "-o", "architecture.training.checkpoint_interval=1"]
    four = ["-o", "architecture.training.num_epochs=4"]
    first = ["train", "options.yaml", *every_epoch, "--output-dir", "first"]
    full = ["train", "options.yaml", *every_epoch, *four, "--output-dir", "full"]
    restarted = ["train", "options.yaml", *every_epoch, *four, "--output-dir"]
    restarted += ["second", "--restart", "first/model.ckpt"]
    assert main(full) == 0
    assert main(first) == 0
    assert main(restarted) == 0

    full = read_csv("full/train.csv")
    first = read_csv("first/train.csv")
    second = read_csv("second/train.csv")
    assert [row["epoch"] for row in full] == ["1", "2", "3", "4"]
    assert [row["epoch"] for row in first] == ["1", "2"]
    assert [row["epoch"] for row in second] == ["3", "4"]
    for uninterrupted, restarted in zip(full[2:], second):
        assert float(restarted["learning_rate"]) == pytest.approx(
            float(uninterrupted["learning_rate"]), abs=1e-12, rel=0
        )
    # the first run decayed over 2 epochs; the restart follows the 4-epoch schedule
    assert float(first[1]["learning_rate"]) < float(second[0]["learning_rate"])

    # in full precision, from the checkpoints written after epochs 3 and 4
    for epoch in (3, 4):
        a = torch.load(f"full/model_{epoch}.ckpt", weights_only=True)
        b = torch.load(f"second/model_{epoch}.ckpt", weights_only=True)
        assert a["epoch"] == b["epoch"] == epoch
        assert a["schedule_state"] == b["schedule_state"]
        lr_a = a["optimizer_state_dict"]["param_groups"][0]["lr"]
        lr_b = b["optimizer_state_dict"]["param_groups"][0]["lr"]
        assert lr_b == pytest.approx(lr_a, abs=1e-12, rel=0)
        steps_per_epoch = a["schedule_state"]["step_count"] // epoch
        schedule_a = LearningRate(a["train_hypers"], steps_per_epoch)
        schedule_a.load_state_dict(a["schedule_state"])
        schedule_b = LearningRate(b["train_hypers"], steps_per_epoch)
        schedule_b.load_state_dict(b["schedule_state"])
        assert schedule_b.value() == pytest.approx(schedule_a.value(), abs=1e-12)
        assert schedule_b.value() == pytest.approx(
            float(full[epoch - 1]["learning_rate"]), rel=1e-5
        )


# --------------------------------------------------------------------- learning
def test_training_beats_composition_baseline(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    frames = ase.io.read(os.path.join(RESOURCES, "ethanol_reduced_100.xyz"), ":")
    ase.io.write("train.xyz", frames[:80])
    ase.io.write("val.xyz", frames[80:])
    write_options(
        "options.yaml",
        {"systems": "train.xyz", "targets": ETHANOL_TARGETS},
        epochs=20,
        validation_set={"systems": "val.xyz", "targets": ETHANOL_TARGETS},
        base_precision=32,
    )
    overrides = [
        "architecture.training.learning_rate=0.01",
        "architecture.model.bpnn.num_neurons_per_layer=16",
        "architecture.model.soap.max_angular=2",
        "architecture.model.soap.max_radial=4",
    ]
    argv = ["train", "options.yaml", "--output-dir", "run"]
    assert main(argv + [f"-o{o}" for o in overrides]) == 0

    # the composition baseline predicts no forces: its RMSE is that of the forces
    reference = np.concatenate([a.get_forces() for a in frames[80:]])
    baseline_rmse = np.sqrt(np.mean(reference**2)) * KCAL_PER_MOL_IN_EV * 1000
    last = read_csv(os.path.join("run", "train.csv"))[-1]
    trained_rmse = float(last["val forces RMSE (meV/Å)"])
    assert trained_rmse < 0.6 * baseline_rmse, (trained_rmse, baseline_rmse)

    # the exported model scores the same on the validation structures
    write_yaml("val.yaml", {"systems": "val.xyz", "targets": ETHANOL_TARGETS})
    assert main(["eval", "model.pt", "val.yaml", "-o", "val_pred.xyz"]) == 0
    with open("val_pred_metrics.json") as file:
        metrics = json.load(file)
    assert metrics["forces RMSE (meV/Å)"] < 0.6 * baseline_rmse, metrics


def test_runs_in_the_same_second_get_their_own_folders(ethanol, monkeypatch):
    import datetime
    import types

    import atomtrain.training.runs

    class Frozen(datetime.datetime):
        @classmethod
        def now(cls, tz=None):
            return cls(2024, 5, 6, 7, 8, 9)

    monkeypatch.setattr(
        atomtrain.training.runs, "datetime", types.SimpleNamespace(datetime=Frozen)
    )
    one = ["-o", "architecture.training.num_epochs=1"]
    assert main(["train", "options.yaml", *SMALL, *one]) == 0
    assert main(["train", "options.yaml", *SMALL, *one]) == 0
    runs = sorted(glob.glob(os.path.join("outputs", "*", "*")))
    assert len(runs) == 2, runs
    assert runs[0] == os.path.join("outputs", "2024-05-06", "07-08-09")
    for run in runs:
        assert [row["epoch"] for row in read_csv(f"{run}/train.csv")] == ["1"]


def test_restart_auto(ethanol, capsys):
    two = ["-o", "architecture.training.num_epochs=2"]
    three = ["-o", "architecture.training.num_epochs=3"]
    # nothing under outputs/ yet: starts afresh
    assert main(["train", "options.yaml", *SMALL, *two, "--restart", "auto"]) == 0
    (first,) = glob.glob("outputs/*/*")
    # same options: continues the same run in its folder (already finished here),
    # without duplicating rows of train.csv
    assert main(["train", "options.yaml", *SMALL, *two, "--restart", "auto"]) == 0
    assert glob.glob("outputs/*/*") == [first]
    rows = read_csv(os.path.join(first, "train.csv"))
    assert [row["epoch"] for row in rows] == ["1", "2"]
    # other options: another run, started afresh in a new folder
    assert main(["train", "options.yaml", *SMALL, *three, "--restart", "auto"]) == 0
    assert len(glob.glob("outputs/*/*")) == 2
