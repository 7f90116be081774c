"""The architecture conformance suite: one set of tests every architecture runs.

An architecture's test file subclasses :class:`ArchitectureTests`::

    from atomtrain.testing import ArchitectureTests

    class TestMyArch(ArchitectureTests):
        architecture = "experimental.myarch"  # registry name
        model_hypers = {}  # merged over the documentation defaults
        training_hypers = {}  # merged over the defaults and the suite's tiny run

and pytest collects the inherited tests. Numbers are checked in float64 on a
small untrained model whose composition baseline is fitted on the bundled data.
"""

from __future__ import annotations

import copy
import csv
import glob
import json
import math
import os

import pytest
import torch
from metatomic.torch import ModelOutput

from atomtrain.abc import ModelInterface
from atomtrain.architectures.hypers import defaults_of, resolve_hypers
from atomtrain.architectures.registry import (
    find_architecture,
    import_architecture,
    import_documentation,
)
from atomtrain.data.info import TargetInfo
from atomtrain.testing.fixtures import (
    CPU,
    ENERGY,
    F64,
    assert_batches_close,
    checkpoints_folder,
    compare_references,
    dataset_info,
    energy_targets,
    fresh,
    random_rotation,
    raw_outputs,
    read_bundled,
    reference_path,
    reference_predictions,
    run,
    with_type,
)
from atomtrain.training.baseline_fit import fit_baselines
from atomtrain.training.checkpoints import read_checkpoint


CONTEXTS = ["restart", "finetune", "export"]
# a tiny training run; keys the architecture's TrainerHypers lacks are left out
TINY_TRAINING = {"num_epochs": 4, "batch_size": 2, "checkpoint_interval": 1000}


class ArchitectureTests:
    """Conformance tests of one architecture (not collected itself: no ``Test``
    prefix; a subclass without ``architecture`` is skipped)."""

    architecture: str | None = None
    model_hypers: dict = {}
    training_hypers: dict = {}
    # tolerances of float64 comparisons (relative, absolute)
    rtol: float = 1e-10
    atol: float = 1e-9

    # ---------------------------------------------------------------- fixtures
    @pytest.fixture(scope="class")
    @classmethod
    def arch(cls):
        name = cls.architecture
        if name is None:
            pytest.skip("set 'architecture' to the registry name to run the suite")
        return import_architecture(name)

    @pytest.fixture(scope="class")
    @classmethod
    def documentation(cls, arch):
        return import_documentation(cls.architecture)

    @pytest.fixture(scope="class")
    @classmethod
    def hypers(cls, documentation):
        name = cls.architecture
        return resolve_hypers(
            documentation.ModelHypers,
            cls.model_hypers,
            "architecture.model",
            name,
        )

    @pytest.fixture(scope="class")
    @classmethod
    def train_hypers(cls, documentation):
        defaults = defaults_of(documentation.TrainerHypers)
        tiny = {k: v for k, v in TINY_TRAINING.items() if k in defaults}
        tiny.update(cls.training_hypers)
        return resolve_hypers(
            documentation.TrainerHypers,
            tiny,
            "architecture.training",
            cls.architecture,
        )

    @pytest.fixture(scope="class")
    @classmethod
    def ethanol(cls):
        return read_bundled("ethanol")

    @pytest.fixture(scope="class")
    @classmethod
    def carbon(cls):
        return read_bundled("carbon")

    @pytest.fixture(scope="class")
    @classmethod
    def build(cls, arch, hypers, ethanol, carbon):
        """``build(info=None)``: the same float64 model at every call, with its
        composition baseline fitted on the bundled data."""

        def build(info=None):
            info = dataset_info() if info is None else info
            torch.manual_seed(0x5EED)
            model = arch.__model__(copy.deepcopy(hypers), info)
            assert isinstance(model, ModelInterface)
            model = model.to(F64)
            with torch.no_grad():
                fit_baselines(model, ethanol + carbon, info)
            return model.eval()

        return build

    @pytest.fixture(scope="class")
    @classmethod
    def model(cls, build):
        return build()

    @pytest.fixture(scope="class")
    @classmethod
    def exported(cls, build, tmp_path_factory):
        from metatomic.torch import load_atomistic_model

        from atomtrain.export import save_exported

        path = str(tmp_path_factory.mktemp("exported") / "model.pt")
        save_exported(build().export(), path)
        return path, load_atomistic_model(path)

    def _structures(self, request, which):
        return request.getfixturevalue(which)

    # ------------------------------------------------------------------- tests
    def test_builds_from_default_hypers(self, arch, documentation):
        hypers = defaults_of(documentation.ModelHypers)
        model = arch.__model__(hypers, dataset_info())
        assert isinstance(model, ModelInterface)
        assert ENERGY in model.supported_outputs()
        trainer = arch.__trainer__(defaults_of(documentation.TrainerHypers))
        assert trainer.__checkpoint_version__ >= 1

    @pytest.mark.parametrize("which", ["ethanol", "carbon"])
    def test_forward(self, model, request, which):
        structures = self._structures(request, which)
        batch = run(model, structures)
        energies = batch.values[ENERGY]
        assert energies.shape == (len(structures), 1)
        assert bool(torch.isfinite(energies).all())
        forces = batch.forces[ENERGY]
        assert forces.shape == (sum(len(s) for s in structures), 3)
        assert bool(torch.isfinite(forces).all())
        if which == "carbon":  # all periodic: a stress per structure
            assert batch.stress[ENERGY].shape == (len(structures), 3, 3)
            assert bool(torch.isfinite(batch.stress[ENERGY]).all())

    @pytest.mark.parametrize("which", ["ethanol", "carbon"])
    def test_per_atom_energies_sum_to_total(self, model, request, which):
        if model.supported_outputs()[ENERGY].sample_kind != "atom":
            pytest.skip("this architecture does not predict per-atom energies")
        structures = self._structures(request, which)
        total = raw_outputs(
            model, structures, {ENERGY: ModelOutput(unit="eV", sample_kind="system")}
        )[ENERGY].block()
        atomic = raw_outputs(
            model, structures, {ENERGY: ModelOutput(unit="eV", sample_kind="atom")}
        )[ENERGY].block()
        assert atomic.samples.names == ["system", "atom"]
        assert atomic.values.shape[0] == sum(len(s) for s in structures)
        sums = torch.zeros_like(total.values)
        sums.index_add_(0, atomic.samples.values[:, 0].to(torch.long), atomic.values)
        torch.testing.assert_close(sums, total.values, rtol=self.rtol, atol=self.atol)

    @pytest.mark.parametrize("which", ["ethanol", "carbon"])
    def test_last_layer_features(self, model, request, which):
        """Per-atom energies are ``last_layer_features @ last_layer_weights``
        plus a per-element shift (what LLPR uncertainty relies on); models
        without last-layer features skip (they get no uncertainty outputs)."""
        from atomtrain.data.systems import compute_neighbors, make_system

        try:
            weights = model.last_layer_weights(ENERGY)
        except NotImplementedError:
            pytest.skip("this architecture does not expose last-layer features")
        structures = [fresh(s) for s in self._structures(request, which)]
        atomic = (
            raw_outputs(
                model, structures, {ENERGY: ModelOutput(unit="eV", sample_kind="atom")}
            )[ENERGY]
            .block()
            .values
        )
        requests = model.requested_neighbor_lists()
        compute_neighbors(structures, requests)
        systems = [make_system(s, requests, F64, CPU)[0] for s in structures]
        with torch.no_grad():
            features = model.last_layer_features(systems, ENERGY)
        assert features.shape == (atomic.shape[0], weights.shape[0])
        linear = features @ weights
        shift = (atomic - linear).reshape(-1)
        types = torch.cat([s.types for s in structures])
        for atomic_type in types.unique():
            values = shift[types == atomic_type]
            torch.testing.assert_close(
                values, values[:1].expand_as(values), rtol=0.0, atol=self.atol
            )
        assert float(linear.std()) > 0

    def test_torchscript_export(self, exported):
        path, loaded = exported
        assert os.path.isfile(path)
        capabilities = loaded.capabilities()
        assert ENERGY in capabilities.outputs
        assert capabilities.dtype == "float64"
        assert sorted(capabilities.atomic_types) == dataset_info().atomic_types

    @pytest.mark.parametrize("which", ["ethanol", "carbon"])
    def test_exported_matches_in_memory(self, model, exported, request, which):
        from atomtrain.evaluation.models import model_call

        structures = self._structures(request, which)
        direct = run(model, structures)
        saved = run(model, structures, call=model_call(exported[1]))
        assert_batches_close(saved, direct, self.rtol, self.atol)

    @pytest.mark.parametrize("context", CONTEXTS)
    def test_checkpoint_round_trip(
        self, arch, model, train_hypers, ethanol, carbon, tmp_path, context
    ):
        path = str(tmp_path / "model.ckpt")
        arch.__trainer__(copy.deepcopy(train_hypers)).save_checkpoint(model, path)
        checkpoint = read_checkpoint(path)
        assert checkpoint["architecture_name"] == self.architecture
        loaded = arch.__model__.load_checkpoint(checkpoint, context).eval()
        assert next(loaded.parameters()).dtype == F64
        for structures in (ethanol, carbon):
            assert_batches_close(run(loaded, structures), run(model, structures), 0, 0)
        trainer = arch.__trainer__.load_checkpoint(
            read_checkpoint(path), copy.deepcopy(train_hypers), context
        )
        assert isinstance(trainer, arch.__trainer__)

    def test_restart_changes_nothing(self, arch, build, train_hypers, tmp_path):
        model = build()
        structures = read_bundled("ethanol")[:3] + read_bundled("carbon")[:3]
        before = run(model, structures)
        path = str(tmp_path / "model.ckpt")
        arch.__trainer__(copy.deepcopy(train_hypers)).save_checkpoint(model, path)
        loaded = arch.__model__.load_checkpoint(read_checkpoint(path), "restart")
        assert_batches_close(run(loaded.eval(), structures), before, 0, 0)
        same = loaded.restart(dataset_info())
        assert same.dataset_info.to_dict() == model.dataset_info.to_dict()
        assert_batches_close(run(same.eval(), structures), before, 0, 0)

    def test_restart_with_new_atomic_type(self, build, ethanol, carbon):
        model = build()
        before = [run(model, s) for s in (ethanol, carbon)]
        new = model.restart(dataset_info(types=[1, 6, 7, 8])).eval()
        assert 7 in new.dataset_info.atomic_types
        for structures, expected in zip((ethanol, carbon), before):
            assert_batches_close(run(new, structures), expected, self.rtol, self.atol)
        nitrogen = [with_type(ethanol[0], 0, 7), with_type(carbon[0], 1, 7)]
        batch = run(new, nitrogen)
        assert bool(torch.isfinite(batch.values[ENERGY]).all())
        assert bool(torch.isfinite(batch.forces[ENERGY]).all())

    def test_restart_with_new_target(self, build, ethanol, carbon):
        model = build()
        before = [run(model, s) for s in (ethanol, carbon)]
        extra = TargetInfo("atomtrain::extra", quantity="extra", unit="")
        new = model.restart(
            dataset_info(targets={**energy_targets(), extra.name: extra})
        )
        new = new.eval()
        assert extra.name in new.supported_outputs()
        assert extra.name in new.dataset_info.targets
        old = energy_targets()
        for structures, expected in zip((ethanol, carbon), before):
            batch = run(new, structures, targets=old)
            assert_batches_close(batch, expected, self.rtol, self.atol)
        values = run(new, ethanol + carbon, targets={extra.name: extra}).values
        assert values[extra.name].shape == (len(ethanol) + len(carbon), 1)
        assert bool(torch.isfinite(values[extra.name]).all())

    @pytest.mark.parametrize("device", ["cpu", "cuda"])
    def test_dtypes_and_devices(self, arch, build, ethanol, carbon, device):
        if device not in arch.__model__.__supported_devices__:
            pytest.skip(f"the architecture does not support {device}")
        if device == "cuda" and not torch.cuda.is_available():
            pytest.skip("no CUDA device available")
        structures = ethanol[:2] + carbon[:2]
        expected = run(build(), structures)
        for dtype in arch.__model__.__supported_dtypes__:
            model = build().to(device=device, dtype=dtype)
            batch = run(model, structures, dtype=dtype, device=torch.device(device))
            tolerance = max(1e-6, 1000 * torch.finfo(dtype).eps)
            for field in ("values", "forces"):
                got = getattr(batch, field)[ENERGY]
                assert got.dtype == dtype and got.device.type == device
                assert bool(torch.isfinite(got).all()), (dtype, field)
                want = getattr(expected, field)[ENERGY]
                scale = float(want.abs().max()) + 1.0
                torch.testing.assert_close(
                    got.to(CPU, F64), want, rtol=0, atol=tolerance * scale
                )

    def _stored_checkpoints(self, arch):
        folder = checkpoints_folder(find_architecture(self.architecture).module)
        paths = sorted(glob.glob(os.path.join(folder or "", "*.ckpt")))
        if not paths:
            pytest.skip(
                f"architecture '{self.architecture}' has no stored checkpoints in "
                f"{folder} (required for stable architectures; write them with "
                f"'python -m atomtrain.testing.make_reference {self.architecture}')"
            )
        return paths

    def test_upgrade_stored_checkpoints(self, arch, train_hypers, ethanol):
        for path in self._stored_checkpoints(arch):
            checkpoint = read_checkpoint(path)
            assert checkpoint["architecture_name"] == self.architecture, path
            checkpoint = arch.__model__.upgrade_checkpoint(checkpoint)
            checkpoint = arch.__trainer__.upgrade_checkpoint(checkpoint)
            model = arch.__model__.load_checkpoint(checkpoint, "export").eval()
            model.export()
            dtype = next(model.parameters()).dtype
            batch = run(model, ethanol[:2], dtype=dtype)
            assert bool(torch.isfinite(batch.values[ENERGY]).all()), path
            arch.__trainer__.load_checkpoint(
                read_checkpoint(path), copy.deepcopy(train_hypers), "restart"
            )

    def test_stored_checkpoint_regression(self, arch):
        compared = 0
        for path in self._stored_checkpoints(arch):
            if not os.path.isfile(reference_path(path)):
                continue
            with open(reference_path(path)) as file:
                expected = json.load(file)
            model = arch.__model__.load_checkpoint(read_checkpoint(path), "export")
            actual = reference_predictions(model.eval())
            assert actual["dtype"] == expected["dtype"], path
            compare_references(actual, expected, os.path.basename(path))
            compared += 1
        if compared == 0:
            pytest.skip(
                "no stored checkpoint has reference predictions (a .json file "
                "beside the .ckpt)"
            )

    @pytest.mark.parametrize("which", ["ethanol", "carbon"])
    def test_invariance(self, model, request, which):
        structure = self._structures(request, which)[1]
        base = run(model, [structure])
        energy, forces = base.values[ENERGY], base.forces[ENERGY]
        n = len(structure)
        order = torch.randperm(n, generator=torch.Generator().manual_seed(3))
        if bool((order == torch.arange(n)).all()):
            order = order.flip(0)
        rotation = random_rotation(11)
        shift = torch.tensor([0.37, -1.21, 2.53], dtype=F64)
        cases = {
            "translated": (fresh(structure, structure.positions + shift), forces),
            "permuted": (fresh(structure, order=order), forces[order]),
            "rotated": (
                fresh(
                    structure,
                    structure.positions @ rotation.T,
                    structure.cell @ rotation.T,
                ),
                forces @ rotation.T,
            ),
        }
        scale = float(energy.abs().max()) + 1.0
        for case, (variant, expected_forces) in cases.items():
            batch = run(model, [variant])
            torch.testing.assert_close(
                batch.values[ENERGY], energy, rtol=0, atol=1e-10 * scale, msg=case
            )
            torch.testing.assert_close(
                batch.forces[ENERGY], expected_forces, rtol=0, atol=1e-8, msg=case
            )

    def test_short_training_lowers_loss(
        self, arch, hypers, train_hypers, ethanol, tmp_path
    ):
        torch.manual_seed(0)
        info = dataset_info(targets=energy_targets(stress=False))
        model = arch.__model__(copy.deepcopy(hypers), info)
        dtype = arch.__model__.__supported_dtypes__[0]
        train = [fresh(s) for s in ethanol[:8]]
        val = [fresh(s) for s in ethanol[8:]]
        trainer = arch.__trainer__(copy.deepcopy(train_hypers))
        trainer.train(model, dtype, [CPU], [train], [val], str(tmp_path))
        log = tmp_path / "train.csv"
        assert log.is_file(), "the trainer wrote no train.csv in checkpoint_dir"
        with open(log) as file:
            losses = [float(row["train loss"]) for row in csv.DictReader(file)]
        assert len(losses) >= 2, losses
        assert all(math.isfinite(x) for x in losses), losses
        assert losses[-1] < losses[0], f"training did not lower the loss: {losses}"
        batch = run(model.eval(), ethanol[:2], dtype=dtype)
        assert bool(torch.isfinite(batch.values[ENERGY]).all())
