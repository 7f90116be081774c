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


def test_batches_bounded_in_atoms():
    from atomtrain.training.batches import batches_of

    sizes = [9, 192, 9, 9, 30, 9, 250, 4]
    batches = batches_of(sizes, 2, seed=3, max_atoms=40)
    assert sorted(i for b in batches for i in b) == list(range(len(sizes)))
    for batch in batches:  # bounded, except a structure larger than the bound
        assert sum(sizes[i] for i in batch) <= 40 or len(batch) == 1
    assert batches == batches_of(sizes, 2, seed=3, max_atoms=40)  # reproducible
    assert [len(b) for b in batches_of(sizes, 3, None)] == [3, 3, 2]


def test_training_with_atom_bounded_batches_restarts_exactly(run):
    bounded = ("max_atoms_per_batch=30", "scheduler=constant", "warmup_epochs=0")
    full = run(*bounded, output="full")
    run(*bounded, "num_epochs=2", output="half")
    resumed = run(*bounded, output="resumed", restart="half/model.ckpt")
    assert _equal(resumed["model_state_dict"], full["model_state_dict"])


def test_loss_schedule_raises_a_weight_late(run):
    from atomtrain.training.loss_schedule import loss_at_epoch

    hypers = {
        "loss": {"energy": {"weight": 1.0, "forces": {"weight": 1.0}}},
        "loss_schedule": {3: {"energy": {"weight": 10.0}}},
    }
    assert loss_at_epoch(hypers, 1)["energy"]["weight"] == 1.0
    assert loss_at_epoch(hypers, 2)["energy"]["weight"] == 10.0  # epoch 3
    assert loss_at_epoch(hypers, 2)["energy"]["forces"]["weight"] == 1.0
    run(output="plain")
    run("loss_schedule={3: {energy: {weight: 10}}}", output="scheduled")

    def losses(folder):
        with open(f"{folder}/train.csv") as file:
            rows = [line.split(",") for line in file]
        column = rows[0].index("train loss")
        return [float(row[column]) for row in rows[1:]]

    plain, scheduled = losses("plain"), losses("scheduled")
    assert scheduled[:2] == plain[:2]  # same run until epoch 3
    assert scheduled[2] > plain[2]  # then the energy term weighs ten times more


def test_finetune_heads_leaves_every_other_weight_identical(run):
    pretrained = run(output="pretrained")
    tuned = run(
        "finetune={read_from: pretrained/model.ckpt, method: heads}", output="heads"
    )
    start = pretrained["best_model_state_dict"]
    changed = []
    for name, value in tuned["model_state_dict"].items():
        if name.startswith("heads.") and not name.endswith(("composition", "scale")):
            changed.append(not torch.equal(value, start[name]))
        elif not name.startswith("heads."):
            assert torch.equal(value, start[name]), name  # frozen: bit-identical
    assert changed and all(changed)  # every head weight trained


def test_finetune_full_on_new_elements_and_targets(run, tmp_path):
    import ase.io
    from kill_harness import RESOURCES

    run(output="pretrained")
    frames = ase.io.read(os.path.join(RESOURCES, "qm9_reduced_100.xyz"), ":24")
    ase.io.write("qm9.xyz", frames)  # adds nitrogen and a U0 target
    options = yaml.safe_load(open("options.yaml"))
    options["training_set"] = {
        "systems": "qm9.xyz",
        "targets": {"U0": {"quantity": "energy", "unit": "hartree"}},
    }
    yaml.safe_dump(options, open("options.yaml", "w"))
    tuned = run("finetune={read_from: pretrained/model.ckpt}", output="tuned")
    info = tuned["dataset_info"]
    assert info["atomic_types"] == [1, 6, 7, 8]
    assert set(info["targets"]) == {"energy", "atomtrain::U0"}


LORA = "finetune={read_from: pretrained/model.ckpt, method: lora, lora: {rank: 2}}"


def test_finetune_lora_trains_only_the_adapters_and_merges_them(run):
    from atomtrain.architectures.soap_bpnn.model import SoapBpnn
    from atomtrain.testing.fixtures import assert_batches_close, read_bundled
    from atomtrain.testing.fixtures import run as predict_with
    from atomtrain.training import lora

    pretrained = run(output="pretrained")
    tuned = run(LORA, output="lora")
    start = pretrained["best_model_state_dict"]
    raw = tuned["lora_state_dict"]["model"]
    adapters = [k for k in raw if k.endswith(lora.ADAPTER_SUFFIXES)]
    assert adapters
    assert all(raw[k].abs().sum() > 0 for k in adapters if k.endswith("lora_b"))
    for name, value in raw.items():
        if name.endswith(lora.ADAPTER_SUFFIXES + ("composition", "scale")):
            continue  # adapters train; the baseline is re-fitted on the new data
        assert torch.equal(value, start[name.replace(".base.", ".")]), name  # frozen

    # readers of the checkpoint see a plain model with the adapters merged in
    assert set(tuned["model_state_dict"]) == set(start)
    merged = SoapBpnn.load_checkpoint(tuned, "restart").to(torch.float64)
    weights = [k for k in start if k.endswith(".weight") and "norm" not in k]
    assert all(not torch.equal(merged.state_dict()[k], start[k]) for k in weights)
    wrapped = SoapBpnn.load_checkpoint(pretrained, "export")
    lora.attach(wrapped, 2, 8.0)
    wrapped.load_state_dict(raw)
    structures = read_bundled("ethanol")[:4]
    assert_batches_close(
        predict_with(merged, structures),
        predict_with(wrapped.to(torch.float64), structures),
        rtol=1e-5,
        atol=1e-6,
    )


def test_finetune_lora_restarts_exactly(run):
    run(output="pretrained")
    constant = (LORA, "scheduler=constant", "warmup_epochs=0", "ema_decay=0.5")
    full = run(*constant, output="full")
    run(*constant, "num_epochs=2", output="half")
    resumed = run(*constant, output="resumed", restart="half/model.ckpt")
    for key in ("model_state_dict", "ema_state_dict", "best_model_state_dict"):
        assert _equal(resumed[key], full[key]), key
    assert _equal(resumed["lora_state_dict"]["model"], full["lora_state_dict"]["model"])
