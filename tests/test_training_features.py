"""Weight averaging (EMA), early stopping and best-model selection."""

import glob
import os

import pytest
import torch
import yaml
from kill_harness import prepare

from atomtrain.cli import main


@pytest.fixture
def run(tmp_path, monkeypatch):
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


def _equal(a, b):
    return all(torch.equal(a[k], b[k]) for k in a)


def test_ema_is_used_for_export_and_restarts_exactly(run):
    # a constant schedule does not depend on num_epochs: 2 + 2 epochs == 4 epochs
    constant = ("ema_decay=0.9", "scheduler=constant", "warmup_epochs=0")
    full = run(*constant, output="full")
    assert full["ema_state_dict"] is not None
    assert not _equal(full["ema_state_dict"], full["model_state_dict"])
    # the best model was selected on the averaged weights
    assert not _equal(full["best_model_state_dict"], full["model_state_dict"])
    run(*constant, "num_epochs=2", output="half")
    resumed = run(*constant, output="resumed", restart="half/model.ckpt")
    for key in ("model_state_dict", "ema_state_dict", "best_model_state_dict"):
        assert _equal(resumed[key], full[key]), key


def test_export_without_validation_uses_the_average(run, tmp_path):
    from atomtrain.architectures.soap_bpnn.model import SoapBpnn

    options = yaml.safe_load(open("options.yaml"))
    options["validation_set"] = 0.0
    yaml.safe_dump(options, open("options.yaml", "w"))
    checkpoint = run("ema_decay=0.5")
    assert checkpoint["best_model_state_dict"] is None
    exported = SoapBpnn.load_checkpoint(checkpoint, "export").state_dict()
    assert _equal(exported, checkpoint["ema_state_dict"])
    assert not _equal(exported, checkpoint["model_state_dict"])


def test_early_stopping(run, caplog):
    # a learning rate far below float64 resolution: nothing improves any more
    run(
        "learning_rate=1e-30",
        "warmup_epochs=0",
        "scheduler=constant",
        "early_stopping_patience=2",
        "num_epochs=10",
    )
    with open("run/train.csv") as file:
        epochs = [line.split(",")[0] for line in file.readlines()[1:]]
    assert epochs == ["1", "2", "3"]  # best at 1, then two epochs without gain
    assert "early stopping after epoch 3" in caplog.text


def test_best_model_metric(run, capsys):
    checkpoint = run("best_model_metric=forces MAE (meV/Å)")
    with open("run/train.csv") as file:
        rows = [line.rstrip("\n").split(",") for line in file]
    column = rows[0].index("val forces MAE (meV/Å)")
    assert checkpoint["best_loss"] == pytest.approx(
        min(float(r[column]) for r in rows[1:]), rel=1e-5
    )
    assert (
        main(
            [
                "train",
                "options.yaml",
                "-oarchitecture.training.best_model_metric=force MAE",
            ]
        )
        == 1
    )
    assert "'forces MAE (meV/Å)'" in capsys.readouterr().err
    assert glob.glob("outputs/*/*")  # the bad metric is found after one epoch
