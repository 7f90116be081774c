"""Checkpoints: safe loading, version upgrades, and clear errors for bad files."""

import os
import warnings

import ase.io
import pytest
import torch
import yaml

from atomtrain.architectures.soap_bpnn.model import SoapBpnn
from atomtrain.cli import main
from atomtrain.data.dataset import read_dataset
from atomtrain.data.info import DatasetInfo, TargetInfo
from atomtrain.errors import UserError
from atomtrain.evaluation.engine import evaluate_model
from atomtrain.evaluation.writing import AtomsCollector
from atomtrain.options.expand import expand_dataset
from atomtrain.options.schema import DatasetSection
from atomtrain.options.validation import validate
from atomtrain.training.checkpoints import read_checkpoint, upgrade_steps
from atomtrain.training.loop import StandardTrainer


RESOURCES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "resources")
TARGETS = {"energy": {"key": "energy", "unit": "kcal/mol", "forces": True}}
SMALL_MODEL = {
    "soap": {
        "cutoff": 4.0,
        "cutoff_width": 0.5,
        "max_radial": 3,
        "max_angular": 2,
        "pseudo_species": 3,
    },
    "bpnn": {"num_hidden_layers": 1, "num_neurons_per_layer": 8, "layernorm": True},
}
CURRENT = SoapBpnn.__checkpoint_version__  # of the checkpoints written here


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """Folder with ethanol.xyz, options.yaml and a real model.ckpt (1 epoch)."""
    folder = tmp_path_factory.mktemp("trained")
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(folder)
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        frames = ase.io.read(os.path.join(RESOURCES, "ethanol_reduced_100.xyz"), ":8")
        ase.io.write("ethanol.xyz", frames)
        options = {
            "architecture": {
                "name": "soap_bpnn",
                "model": SMALL_MODEL,
                "training": {"num_epochs": 1, "checkpoint_interval": 1},
            },
            "training_set": {"systems": "ethanol.xyz", "targets": TARGETS},
            "validation_set": 0.25,
            "seed": 3,
        }
        with open("options.yaml", "w") as file:
            yaml.safe_dump(options, file)
        try:
            assert main(["train", "options.yaml", "--output-dir", "run"]) == 0
        finally:
            torch.set_num_threads(threads)
    return folder


@pytest.fixture
def here(trained, tmp_path, monkeypatch):
    """A fresh working folder holding copies of the trained run's files."""
    for name in ("ethanol.xyz", "options.yaml", "model.ckpt", "model.pt"):
        with open(trained / name, "rb") as source:
            (tmp_path / name).write_bytes(source.read())
    monkeypatch.chdir(tmp_path)
    return tmp_path


def structures():
    section = expand_dataset({"systems": "ethanol.xyz", "targets": TARGETS}, "x")
    section = validate(DatasetSection, section).model_dump()
    return read_dataset(section, {})[0]


def predictions(model):
    info = model.dataset_info
    frames = AtomsCollector(info)
    evaluate_model(model, structures(), info, 8, output=frames, dtype=torch.float32)
    return torch.tensor([atoms.get_potential_energy() for atoms in frames.frames])


# --------------------------------------------------------------------- loading
def test_checkpoint_loads_with_weights_only(here, trained):
    for path in ("model.ckpt", trained / "run" / "model_1.ckpt"):
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
        assert checkpoint["architecture_name"] == "soap_bpnn"
        assert checkpoint["model_ckpt_version"] == SoapBpnn.__checkpoint_version__
        assert checkpoint["trainer_ckpt_version"] == 1
        assert checkpoint["epoch"] == 1
        for key in (
            "model_hypers",
            "dataset_info",
            "model_state_dict",
            "optimizer_state_dict",
            "schedule_state",
            "train_hypers",
        ):
            assert checkpoint[key] is not None, key
    assert read_checkpoint("model.ckpt")["epoch"] == 1


def test_checkpoint_without_training_can_be_exported(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    info = DatasetInfo([1, 6, 8], {"energy": TargetInfo("energy")})
    model = SoapBpnn(SMALL_MODEL, info)
    trainer = StandardTrainer({"num_epochs": 1})
    trainer.save_checkpoint(model, "fresh.ckpt")
    checkpoint = torch.load("fresh.ckpt", weights_only=True)
    assert checkpoint["optimizer_state_dict"] is None and checkpoint["epoch"] == 0
    assert not [p for p in os.listdir() if p.startswith(".tmp-")]  # atomic write
    assert main(["export", "fresh.ckpt", "-o", "fresh.pt"]) == 0
    assert os.path.isfile("fresh.pt")


# --------------------------------------------------------------------- upgrades
class SoapBpnnV2(SoapBpnn):
    """A next version (CURRENT + 1) that renamed ``norm`` to ``descriptor_norm``
    and added a buffer; its ``upgrade_from_v{CURRENT}`` is ``upgrade``."""

    __checkpoint_version__ = CURRENT + 1
    upgraded = 0

    def __init__(self, hypers, dataset_info):
        super().__init__(hypers, dataset_info)
        # rename in place: parameter order (and the optimizer state) is unchanged
        self._modules = {
            ("descriptor_norm" if name == "norm" else name): module
            for name, module in self._modules.items()
        }
        self.register_buffer("energy_offset", torch.zeros(1))

    @property
    def norm(self):  # forward() still reads self.norm
        return self.descriptor_norm

    @staticmethod
    def upgrade(checkpoint):
        SoapBpnnV2.upgraded += 1
        checkpoint = dict(checkpoint)
        for key in ("model_state_dict", "best_model_state_dict"):
            if checkpoint.get(key) is None:
                continue
            state = {
                ("descriptor_" + k if k.startswith("norm.") else k): v
                for k, v in checkpoint[key].items()
            }
            state["energy_offset"] = torch.tensor([0.25])
            checkpoint[key] = state
        checkpoint["upgrade_note"] = f"from v{CURRENT}"
        return checkpoint


setattr(SoapBpnnV2, f"upgrade_from_v{CURRENT}", SoapBpnnV2.upgrade)


class SoapBpnnV2WithoutUpgrade(SoapBpnnV2):
    pass


setattr(SoapBpnnV2WithoutUpgrade, f"upgrade_from_v{CURRENT}", None)


def test_checkpoint_is_upgraded_to_the_next_version(here):
    checkpoint = read_checkpoint("model.ckpt")
    assert checkpoint["model_ckpt_version"] == CURRENT
    assert "norm.weight" in checkpoint["model_state_dict"]
    v1 = SoapBpnn.load_checkpoint(read_checkpoint("model.ckpt"), "restart")

    SoapBpnnV2.upgraded = 0
    v2 = SoapBpnnV2.load_checkpoint(read_checkpoint("model.ckpt"), "restart")
    assert SoapBpnnV2.upgraded == 1
    state = v2.state_dict()
    assert "norm.weight" not in state and "descriptor_norm.weight" in state
    torch.testing.assert_close(
        state["descriptor_norm.weight"], v1.state_dict()["norm.weight"]
    )
    assert float(v2.energy_offset) == 0.25
    # same weights under the new names: same predictions
    torch.testing.assert_close(predictions(v2), predictions(v1))

    upgraded = SoapBpnnV2.upgrade_checkpoint(read_checkpoint("model.ckpt"))
    assert upgraded["model_ckpt_version"] == CURRENT + 1
    assert upgraded["upgrade_note"] == f"from v{CURRENT}"
    # a checkpoint already at the next version is not upgraded again
    SoapBpnnV2.upgraded = 0
    upgraded = SoapBpnnV2.upgrade_checkpoint(upgraded)
    assert upgraded["model_ckpt_version"] == CURRENT + 1
    assert SoapBpnnV2.upgraded == 0


def test_checkpoint_is_upgraded_by_the_cli_loader(here, monkeypatch):
    import atomtrain.architectures.soap_bpnn as architecture
    from atomtrain.api.models import load_checkpoint as load_model

    SoapBpnnV2.upgraded = 0
    monkeypatch.setattr(architecture, "__model__", SoapBpnnV2)
    for context in ("restart", "export"):
        _, model, checkpoint = load_model("model.ckpt", context, "soap_bpnn")
        assert isinstance(model, SoapBpnnV2)
        assert float(model.energy_offset) == 0.25
    assert SoapBpnnV2.upgraded == 2
    # the trainer part of the same checkpoint restores the training state
    trainer = architecture.__trainer__.load_checkpoint(
        checkpoint, checkpoint["train_hypers"], "restart"
    )
    assert trainer.epoch == 1 and trainer.state is not None


def test_missing_upgrade_step_is_a_user_error(here):
    with pytest.raises(UserError, match=f"upgrade_from_v{CURRENT}"):
        SoapBpnnV2WithoutUpgrade.load_checkpoint(
            read_checkpoint("model.ckpt"), "export"
        )


def test_upgrade_steps_run_in_order():
    class Model:
        __checkpoint_version__ = 4
        __qualname__ = "Model"

        @staticmethod
        def upgrade_from_v2(c):
            return {**c, "steps": c["steps"] + [2]}

        @staticmethod
        def upgrade_from_v3(c):
            return {**c, "steps": c["steps"] + [3]}

    upgraded = upgrade_steps({"v": 2, "steps": []}, Model, "v", "model")
    assert upgraded == {"v": 4, "steps": [2, 3]}


def test_newer_model_checkpoint_names_both_versions(here, capsys):
    checkpoint = torch.load("model.ckpt", weights_only=True)
    checkpoint["model_ckpt_version"] = 7
    torch.save(checkpoint, "newer.ckpt")
    with pytest.raises(UserError) as error:
        SoapBpnn.load_checkpoint(read_checkpoint("newer.ckpt"), "export")
    assert "version 7" in str(error.value)
    assert f"(version {CURRENT})" in str(error.value)

    assert main(["export", "newer.ckpt"]) == 1
    err = capsys.readouterr().err
    assert "newer.ckpt" in err and "version 7" in err
    assert f"(version {CURRENT})" in err
    assert "Traceback" not in err


def test_newer_trainer_checkpoint_names_both_versions(here, capsys):
    checkpoint = torch.load("model.ckpt", weights_only=True)
    checkpoint["trainer_ckpt_version"] = 5
    torch.save(checkpoint, "newer.ckpt")
    assert (
        main(["train", "options.yaml", "--restart", "newer.ckpt", "--output-dir", "x"])
        == 1
    )
    err = capsys.readouterr().err
    assert "trainer" in err and "version 5" in err and "version 1" in err
    assert "Traceback" not in err


# ----------------------------------------------------------------- bad files
def test_truncated_checkpoint(here, capsys):
    with open("model.ckpt", "rb") as file:
        data = file.read()
    with open("truncated.ckpt", "wb") as file:
        file.write(data[: len(data) // 2])
    with pytest.raises(UserError, match="truncated"):
        read_checkpoint("truncated.ckpt")
    assert main(["export", "truncated.ckpt"]) == 1
    err = capsys.readouterr().err
    assert "'truncated.ckpt' is not a readable atomtrain checkpoint" in err
    assert "Traceback" not in err


def test_foreign_torch_file(here, capsys):
    torch.save(torch.arange(3.0), "tensor.ckpt")
    torch.save({"state_dict": {"w": torch.zeros(2)}}, "dict.ckpt")
    for path in ("tensor.ckpt", "dict.ckpt"):
        with pytest.raises(UserError, match="not an atomtrain checkpoint"):
            read_checkpoint(path)
        assert main(["export", path]) == 1
        err = capsys.readouterr().err
        assert path in err and "architecture_name" in err
        assert "Traceback" not in err


def test_exported_model_is_not_a_checkpoint(here, capsys):
    assert main(["export", "model.pt", "-o", "again.pt"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("atomtrain export: error: 'model.pt' is not a readable")
    assert "exported models (.pt) cannot be used" in err
    assert len(err.strip().splitlines()) == 1
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(UserError, match="exported models"):
            read_checkpoint("model.pt")
    assert not caught, [str(w.message) for w in caught]  # no torch warning


def test_missing_checkpoint(here, capsys):
    with pytest.raises(UserError, match="nothing.ckpt' does not exist"):
        read_checkpoint("nothing.ckpt")
    assert main(["export", "nothing.ckpt"]) == 1
    assert "nothing.ckpt" in capsys.readouterr().err
