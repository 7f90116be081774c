"""Interrupted runs lose nothing: kills, stop signals, NaN steps."""

import csv
import glob
import math
import os
import signal
import subprocess
import time

import pytest
import torch
from kill_harness import (
    ATOMTRAIN,
    all_checkpoints_readable,
    final_checkpoint,
    kill_and_resume,
    prepare,
    run_to_end,
    same_weights,
)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    folder = str(tmp_path_factory.mktemp("reference"))
    prepare(folder)
    assert run_to_end(folder) == 0
    return final_checkpoint(folder)


def test_kill_9_three_times_then_resume_gives_identical_weights(tmp_path, reference):
    folder = str(tmp_path)
    prepare(folder)
    kill_and_resume(folder, kills=3, seed=1)
    assert all_checkpoints_readable(folder)
    assert same_weights(final_checkpoint(folder), reference)
    (run,) = {os.path.dirname(p) for p in glob.glob(f"{folder}/outputs/*/*/model.ckpt")}
    with open(os.path.join(run, "train.csv")) as file:
        epochs = [row["epoch"] for row in csv.DictReader(file)]
    assert epochs == [str(e) for e in range(1, 7)]  # no row lost or repeated


def test_sigterm_writes_checkpoint_and_resumes_exactly(tmp_path, reference):
    folder = str(tmp_path)
    prepare(folder, epochs=6)
    process = subprocess.Popen(
        [*ATOMTRAIN, "train", "options.yaml"],
        cwd=folder,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    # wait for the first epoch to be logged, then ask the run to stop
    deadline = time.time() + 120
    while not glob.glob(f"{folder}/outputs/*/*/restart.ckpt"):
        assert time.time() < deadline and process.poll() is None
        time.sleep(0.05)
    process.send_signal(signal.SIGTERM)
    output, _ = process.communicate(timeout=120)
    assert process.returncode == 75, output
    assert "training stopped by SIGTERM" in output and "--restart" in output
    (restart,) = glob.glob(f"{folder}/outputs/*/*/restart.ckpt")
    assert torch.load(restart, weights_only=True)["epoch"] < 6
    assert run_to_end(folder) == 0
    assert same_weights(final_checkpoint(folder), reference)


def test_nonfinite_steps_are_skipped_then_stop(tmp_path, monkeypatch, caplog):
    from atomtrain.cli import main
    from atomtrain.training import loop

    prepare(str(tmp_path), epochs=2)
    monkeypatch.chdir(tmp_path)
    original = loop.Batchwise.loss
    calls = {"n": 0}

    def sometimes_nan(self, batch, training):
        loss, errors = original(self, batch, training)
        calls["n"] += 1
        if training and calls["n"] in (2, 3):
            loss = loss * float("nan")
        return loss, errors

    monkeypatch.setattr(loop.Batchwise, "loss", sometimes_nan)
    assert main(["train", "options.yaml"]) == 0
    assert caplog.text.count("skipped a step with a NaN/Inf loss") == 2
    assert "ethanol.xyz:" in caplog.text  # names the structures of the batch

    monkeypatch.setattr(
        loop.Batchwise,
        "loss",
        lambda self, batch, training: (
            original(self, batch, training)[0] * float("inf"),
            {},
        ),
    )
    assert main(["train", "options.yaml", "-o",
                 "architecture.training.max_nonfinite_steps=3"]) == 1  # fmt: skip


def _train_with_a_changed_step(folder, monkeypatch, change, overrides=()):
    """Train ``prepare``'s run (6 epochs of 5 steps) in ``folder`` with the
    loss of the 24th training step multiplied by ``change``."""
    from atomtrain.cli import main
    from atomtrain.training import loop

    prepare(folder, epochs=6)
    monkeypatch.chdir(folder)
    original = loop.Batchwise.loss
    calls = {"n": 0}

    def changed(self, batch, training):
        loss, errors = original(self, batch, training)
        if training:
            calls["n"] += 1
            if calls["n"] == 24:
                loss = loss * change
        return loss, errors

    monkeypatch.setattr(loop.Batchwise, "loss", changed)
    assert main(["train", "options.yaml", *overrides]) == 0
    (run,) = glob.glob(f"{folder}/outputs/*/*/train.csv")
    with open(run) as file:
        losses = [float(row["train loss"]) for row in csv.DictReader(file)]
    return final_checkpoint(folder), losses


def test_loss_spikes_are_skipped_like_nonfinite_steps(tmp_path, monkeypatch, caplog):
    """A step whose loss is a million times the others is left out exactly as a
    NaN step is (same final weights); with the guard off it is applied."""
    spiked, losses = _train_with_a_changed_step(
        str(tmp_path / "spike"), monkeypatch, 1e6
    )
    assert caplog.text.count("skipped a step whose loss") == 1
    assert "loss_spike_factor = 1000" in caplog.text
    assert "ethanol.xyz:" in caplog.text  # names the structures of the batch
    assert losses[4] < 10 * losses[3]  # the epoch's loss leaves the spike out
    skipped_as_nan, _ = _train_with_a_changed_step(
        str(tmp_path / "nan"), monkeypatch, math.nan
    )
    assert same_weights(spiked, skipped_as_nan)
    applied, losses = _train_with_a_changed_step(
        str(tmp_path / "off"),
        monkeypatch,
        1e6,
        ["-o", "architecture.training.loss_spike_factor=0"],
    )
    assert losses[4] > 1e3 * losses[3]
    assert not same_weights(spiked, applied)


def test_missing_labels_are_masked_and_counted(tmp_path, monkeypatch, caplog):
    """Structures lacking a label are left out of that label's loss and metrics."""
    import logging

    import ase.io
    import numpy as np
    import yaml

    from atomtrain.cli import main

    prepare(str(tmp_path), epochs=1)
    monkeypatch.chdir(tmp_path)
    frames = ase.io.read("ethanol.xyz", ":")
    for atoms in frames[:4]:  # four structures without forces
        forces = atoms.calc.results.pop("forces")
    frames[5].calc = None  # one without any label
    ase.io.write("partial.xyz", frames)
    options = yaml.safe_load(open("options.yaml"))
    options["training_set"]["systems"] = "partial.xyz"
    options["validation_set"] = 0.0
    yaml.safe_dump(options, open("options.yaml", "w"))
    with caplog.at_level(logging.INFO, logger="atomtrain"):
        assert main(["train", "options.yaml"]) == 0
    assert "forces of 'energy': 5 of 24 structures" in caplog.text
    assert "target 'energy': 1 of 24 structures" in caplog.text
    # the metrics count only labelled structures: eval scores what is there
    with open("eval.yaml", "w") as file:
        yaml.safe_dump(options["training_set"], file)
    assert main(["eval", "model.pt", "eval.yaml", "-o", "p.xyz"]) == 0
    metrics = yaml.safe_load(open("p_metrics.json"))
    assert np.isfinite(metrics["forces MAE (meV/Å)"])
    assert forces.shape == (9, 3)
