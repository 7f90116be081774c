"""Time budget, stage two and isolated-atom baselines of the shared loop."""

import csv
import math
import os
import shutil

import ase.io
import pytest
import torch
import yaml
from kill_harness import prepare

from atomtrain.cli import main
from atomtrain.training.schedule import LearningRate


ISOLATED = os.path.join(
    os.path.dirname(os.path.abspath(__file__)),
    "resources",
    "isolated_atoms_ethanol.xyz",
)


@pytest.fixture
def run(tmp_path, monkeypatch):
    """``train(*overrides)``: 4 epochs of 5 steps (18 training structures in
    batches of 4) on ethanol; returns the final checkpoint."""
    prepare(str(tmp_path), epochs=4)
    monkeypatch.chdir(tmp_path)

    def train(*overrides, output="run", restart=None):
        args = ["train", "options.yaml", "--output-dir", output]
        args += [f"-oarchitecture.training.{o}" for o in overrides]
        if restart:
            args += ["--restart", restart]
        assert main(args) == 0
        return torch.load(os.path.join(output, "model.ckpt"), weights_only=True)

    return train


@pytest.fixture
def fake_clock(monkeypatch):
    """Every optimiser step takes exactly one second of training time."""
    from atomtrain.training import budget, loop

    now = [0.0]
    original = loop.StandardTrainer._step

    def step(self, steps, batch):
        now[0] += 1.0
        original(self, steps, batch)

    monkeypatch.setattr(loop.StandardTrainer, "_step", step)
    monkeypatch.setattr(budget.Clock, "elapsed", lambda self: self.before + now[0])
    return now


def _rows(folder):
    with open(os.path.join(folder, "train.csv")) as file:
        return list(csv.DictReader(file))


def _equal(a, b):
    return all(torch.equal(a[k], b[k]) for k in a)


# ------------------------------------------------------------------- schedule
def _schedule(**hypers):
    defaults = {
        "learning_rate": 1.0,
        "scheduler": "cosine",
        "min_lr_factor": 0.01,
        "plateau_patience": 10,
        "plateau_factor": 0.5,
        "warmup_epochs": 0.0,
        "num_epochs": 100,
    }
    return LearningRate({**defaults, **hypers}, steps_per_epoch=10)


def test_cosine_follows_the_larger_of_step_and_time_fractions():
    untimed, timed = _schedule(), _schedule(max_time=10.0)
    for schedule in (untimed, timed):
        schedule.step(elapsed=5.0)  # 1 step of 1000, half of the time budget
    assert untimed.progress() == 1 / 1000
    assert timed.progress() == 0.5
    assert timed.value() == pytest.approx(0.01 + 0.99 * 0.5)
    timed.step(elapsed=10.0)
    assert timed.value() == pytest.approx(0.01)  # the decay ends with the budget
    # the decay spans the time left after warmup: no jump when warmup ends
    warm = _schedule(max_time=10.0, warmup_epochs=0.2)  # 2 steps
    warm.step(elapsed=2.0)
    warm.step(elapsed=4.0)
    assert warm.warmup_elapsed == 4.0 and warm.value() == pytest.approx(1.0)
    warm.step(elapsed=7.0)
    assert warm.value() == pytest.approx(0.01 + 0.99 * 0.5)
    restored = _schedule(max_time=10.0, warmup_epochs=0.2)
    restored.load_state_dict(warm.state_dict())
    assert restored.value() == warm.value()


def test_stage_two_caps_the_learning_rate():
    stage_two = {"start": 0.5, "learning_rate_factor": 0.1, "loss": {}}
    schedule = _schedule(scheduler="constant", stage_two=stage_two)
    for _ in range(499):
        schedule.step()
    assert not schedule.in_stage_two() and schedule.value() == 1.0
    schedule.step()
    assert schedule.in_stage_two() and schedule.value() == pytest.approx(0.1)
    cosine = _schedule(stage_two=stage_two, max_time=10.0)
    cosine.step(elapsed=9.0)  # by time: cosine below the cap already
    assert cosine.in_stage_two()
    assert cosine.value() == pytest.approx(
        0.01 + 0.99 * 0.5 * (1 + math.cos(0.9 * math.pi))
    )


# ------------------------------------------------------------------ max_time
def test_time_budget_stops_training_and_exports(run, fake_clock, caplog):
    # one second per step (fake_clock): the stop falls on a known step, so the
    # rate at the end does not depend on how fast this machine validates
    checkpoint = run("num_epochs=100000", "max_time=12.5")
    assert os.path.exists("model.ckpt") and os.path.exists("model.pt")
    assert os.path.exists("run/model.pt")
    assert "training stopped at the time budget" in caplog.text
    assert "training finished" in caplog.text
    assert 1 <= checkpoint["epoch"] < 100000
    assert checkpoint["elapsed_time"] >= 2.0
    rows = _rows("run")
    assert rows[-1]["epoch"] == str(checkpoint["epoch"])  # the last epoch is logged
    # the cosine decay ended with the budget, not at a high learning rate
    assert float(rows[-1]["learning_rate"]) == pytest.approx(1e-3 * 0.01, rel=1e-4)


def test_time_budget_checked_after_every_step_and_summed_over_restarts(
    run, fake_clock, caplog
):
    # 5 steps per epoch, one second each: 7.5 s are spent during step 8
    first = run("num_epochs=100", "max_time=7.5", output="first")
    assert first["epoch"] == 2 and first["schedule_state"]["step_count"] == 8
    assert first["elapsed_time"] == 8.0
    assert [r["epoch"] for r in _rows("first")] == ["1", "2"]  # partial epoch 2 too
    # a restart continues the clock: 7 more seconds reach a budget of 15
    fake_clock[0] = 0.0
    second = run(
        "num_epochs=100", "max_time=15", output="second", restart="first/model.ckpt"
    )
    assert second["schedule_state"]["step_count"] == 15
    assert second["elapsed_time"] == 15.0
    # a restart of a spent budget trains no further
    fake_clock[0] = 0.0
    third = run(
        "num_epochs=100", "max_time=15", output="third", restart="second/model.ckpt"
    )
    assert third["schedule_state"]["step_count"] == 15
    assert caplog.text.count("training stopped at the time budget") == 3


def test_stage_two_starts_at_a_fraction_of_the_time_budget(run, fake_clock):
    checkpoint = run(
        "num_epochs=100",
        "max_time=10",
        "stage_two={start: 0.35, loss: {energy: {weight: 10}}}",
    )
    assert checkpoint["stage_two"]
    rows = _rows("run")  # 3.5 s are reached after step 4, in epoch 1
    assert float(rows[0]["learning_rate"]) <= 1e-4


# ----------------------------------------------------------------- stage two
STAGE_TWO = (
    "scheduler=constant",
    "warmup_epochs=0",
    "stage_two={start: 0.5, learning_rate_factor: 0.1, loss: {energy: {weight: 10}}}",
)


def test_stage_two_changes_rate_and_loss_halfway(run, caplog):
    run("scheduler=constant", "warmup_epochs=0", output="plain")
    staged = run(*STAGE_TWO, "checkpoint_interval=1", output="staged")
    plain_rows, staged_rows = _rows("plain"), _rows("staged")
    # the column holds the rate after each epoch's last step, i.e. the rate the
    # next step uses: stage two starts with the first step of epoch 3
    rates = [float(r["learning_rate"]) for r in staged_rows]
    assert rates == pytest.approx([1e-3, 1e-4, 1e-4, 1e-4])
    assert "stage two from step 10" in caplog.text
    losses = [
        [float(r["train loss"]) for r in rows] for rows in (plain_rows, staged_rows)
    ]
    assert losses[1][:2] == losses[0][:2]  # the same run until stage two
    assert losses[1][2] > losses[0][2]  # then energies weigh ten times more
    # the best model is chosen among the stage-two epochs only
    val = [float(r["val loss"]) for r in staged_rows]
    assert staged["best_loss"] == pytest.approx(min(val[2:]), rel=1e-5)
    # a restart before or during stage two continues it exactly
    for epoch in (2, 3):
        resumed = run(
            *STAGE_TWO, output=f"from{epoch}", restart=f"staged/model_{epoch}.ckpt"
        )
        assert resumed["stage_two"]
        assert _equal(resumed["model_state_dict"], staged["model_state_dict"])


def test_stage_two_loss_names_a_known_target(run, capsys):
    args = ["train", "options.yaml"]
    args += [
        "-oarchitecture.training.stage_two={start: 0.5, loss: {enrgy: {weight: 2}}}"
    ]
    assert main(args) == 1
    assert "stage_two.loss names enrgy" in capsys.readouterr().err


# ------------------------------------------------------------ isolated atoms
def _in_ev(options_file="options.yaml"):
    """The ethanol data in eV (the isolated-atom file's unit)."""
    from atomtrain.data.units import conversion_factor

    factor = conversion_factor("kcal/mol", "eV", "test")
    frames = ase.io.read("ethanol.xyz", ":")
    for atoms in frames:
        atoms.calc.results["energy"] *= factor
        atoms.calc.results["forces"] *= factor
    ase.io.write("ethanol_ev.xyz", frames)
    options = yaml.safe_load(open(options_file))
    options["training_set"]["systems"] = "ethanol_ev.xyz"
    options["training_set"]["targets"]["energy"]["unit"] = "eV"
    yaml.safe_dump(options, open(options_file, "w"))


def test_isolated_atoms_give_the_composition_baseline(run):
    _in_ev()
    shutil.copy(ISOLATED, "isolated.xyz")
    fitted = run("num_epochs=1", output="fitted")
    checkpoint = run("num_epochs=1", "isolated_atoms={energy: isolated.xyz}")
    frames = ase.io.read(ISOLATED, ":")
    energies = {a.numbers[0]: a.get_potential_energy() for a in frames}
    expected = torch.tensor([[energies[z]] for z in (1, 6, 8)], dtype=torch.float64)
    (key,) = [k for k in checkpoint["model_state_dict"] if k.endswith("composition")]
    assert torch.equal(checkpoint["model_state_dict"][key], expected)
    assert not torch.equal(fitted["model_state_dict"][key], expected)
    scale = key.replace("composition", "scale")  # with forces: their RMS, as before
    assert torch.equal(
        checkpoint["model_state_dict"][scale], fitted["model_state_dict"][scale]
    )


def test_isolated_atoms_in_the_target_unit():
    from atomtrain.data.info import DatasetInfo, TargetInfo
    from atomtrain.data.units import conversion_factor
    from atomtrain.training.isolated_atoms import isolated_atom_energies

    options = {
        "architecture": {"training": {"isolated_atoms": {"energy": ISOLATED}}},
        "training_set": [
            {"targets": {"energy": {"key": "energy", "unit": "kcal/mol"}}},
        ],
    }
    info = DatasetInfo([1, 6, 8], {"energy": TargetInfo("energy")})
    energies = isolated_atom_energies(options, info)["energy"]
    factor = conversion_factor("kcal/mol", "eV", "test")
    assert float(energies[1]) == -13.568422383046626 * factor
    assert set(energies) == {1, 6, 7, 8}  # an element beyond the data is harmless


def _bad(capsys, *overrides):
    args = ["train", "options.yaml", *[f"-o{o}" for o in overrides]]
    assert main(args) == 1
    return capsys.readouterr().err


@pytest.mark.parametrize(
    "make, expected",
    [
        (None, ["'missing.xyz'", "does not exist"]),
        ("molecule", ["structure 0 has 2 atoms", "single atom"]),
        ("no oxygen", ["elements O", "has H, C, N"]),
        ("no energy", ["no finite energy under the key 'energy'"]),
    ],
)
def test_isolated_atoms_bad_files(tmp_path, monkeypatch, capsys, make, expected):
    prepare(str(tmp_path), epochs=1)
    monkeypatch.chdir(tmp_path)
    frames = ase.io.read(ISOLATED, ":")
    path = "missing.xyz"
    if make is not None:
        path = "bad.xyz"
        if make == "molecule":
            frames[0] = frames[0] + frames[1]
        elif make == "no oxygen":
            frames = [a for a in frames if a.numbers[0] != 8]
        else:
            frames[1].info.pop("energy", None)
            frames[1].calc = None
        ase.io.write(path, frames)
    message = _bad(capsys, f"architecture.training.isolated_atoms={{energy: {path}}}")
    assert "architecture.training.isolated_atoms.energy" in message
    for part in expected:
        assert part in message, message


def test_isolated_atoms_of_a_target_that_is_no_energy(tmp_path, monkeypatch, capsys):
    prepare(str(tmp_path), epochs=1)
    monkeypatch.chdir(tmp_path)
    shutil.copy(ISOLATED, "isolated.xyz")
    options = yaml.safe_load(open("options.yaml"))
    options["training_set"]["targets"]["gap"] = {"key": "energy"}  # quantity ''
    yaml.safe_dump(options, open("options.yaml", "w"))
    message = _bad(capsys, "architecture.training.isolated_atoms={gap: isolated.xyz}")
    assert "target 'gap' is not a per-structure energy" in message
    message = _bad(
        capsys, "architecture.training.isolated_atoms={forces: isolated.xyz}"
    )
    assert "'forces' is not a target of the training set" in message


def test_stage_two_loss_in_short_form():
    from atomtrain.training.loss_schedule import loss_in_force

    hypers = {
        "loss": {"energy": {"weight": 1.0, "forces": {"weight": 1.0}}},
        "loss_schedule": {2: {"energy": "huber"}},
        "stage_two": {"start": 0.5, "loss": {"energy": 10}},
    }
    assert loss_in_force(hypers, 0, False) == hypers["loss"]
    staged = loss_in_force(hypers, 1, True)
    assert staged == {
        "energy": {"weight": 10.0, "type": "huber", "forces": {"weight": 1.0}}
    }
