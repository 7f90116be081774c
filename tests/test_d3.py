"""Dispersion added at export (``atomtrain export --d3 FUNCTIONAL``): the
exported energy and forces are the model's plus D3(BJ), with D3 computed by
tad-dftd3 (the reference implementation metatomic's DFTD3 follows) for
molecules and by metatomic's DFTD3 alone for periodic cells."""

import pytest
import torch
from metatomic.torch import ModelEvaluationOptions, load_atomistic_model

from atomtrain.architectures.hypers import deep_merge, defaults_of, resolve_hypers
from atomtrain.architectures.registry import import_architecture, import_documentation
from atomtrain.data.info import DatasetInfo, TargetInfo
from atomtrain.data.systems import compute_neighbors, make_system
from atomtrain.errors import UserError
from atomtrain.export import save_exported, with_d3
from atomtrain.testing.fixtures import fresh, read_bundled, run
from atomtrain.training.evaluate import predict


tad_dftd3 = pytest.importorskip("tad_dftd3")

F64 = torch.float64
CPU = torch.device("cpu")
BOHR = 0.52917721090380  # Å
HARTREE = 27.211386245988  # eV


@pytest.fixture(scope="module")
def model():
    name = "soap_bpnn"
    documentation = import_documentation(name)
    hypers = deep_merge(
        defaults_of(documentation.ModelHypers),
        {
            "soap": {"max_angular": 2, "max_radial": 3},
            "bpnn": {"num_neurons_per_layer": 8},
        },
    )
    torch.manual_seed(0)
    info = DatasetInfo(
        [1, 6, 8], {"energy": TargetInfo("energy", gradients=["positions", "strain"])}
    )
    return import_architecture(name).__model__(hypers, info).to(F64).eval()


@pytest.fixture(scope="module")
def exported(model, tmp_path_factory):
    """The model exported with D3 for PBE, saved and loaded back."""
    path = str(tmp_path_factory.mktemp("d3") / "model.pt")
    save_exported(with_d3(model.export(), "PBE"), path)
    return load_atomistic_model(path)


def run_exported(loaded, targets, structures):
    """Values, forces and stress of ``structures`` by the exported model, with
    the neighbour lists it requests (D3's own long list among them)."""

    def call(systems, outputs):
        options = ModelEvaluationOptions(length_unit="angstrom", outputs=outputs)
        return loaded(systems, options, check_consistency=True)

    requests = loaded.requested_neighbor_lists()
    structures = [fresh(s) for s in structures]
    compute_neighbors(structures, requests)
    return predict(call, structures, requests, targets, F64, CPU)


def reference_d3(structure):
    """D3(BJ) energy (eV) and forces (eV/Å) of PBE for a molecule, by
    tad-dftd3 (two-body terms: s9 = 0, as metatomic's wrapper has no
    three-body term)."""
    params = tad_dftd3.param.get_functional_params("pbe", damping="bj", dtype=F64)
    params["s9"] = torch.tensor(0.0, dtype=F64)
    positions = (structure.positions / BOHR).clone().requires_grad_(True)
    energy = tad_dftd3.dftd3(structure.types.long(), positions, params).sum()
    (gradient,) = torch.autograd.grad(energy, positions)
    return float(energy.detach()) * HARTREE, -gradient * HARTREE / BOHR


def test_exported_energy_is_model_plus_d3_for_molecules(model, exported):
    molecules = read_bundled("ethanol")[:3]
    with_dispersion = run_exported(exported, model.dataset_info.targets, molecules)
    without = run(model, molecules)
    for i, structure in enumerate(molecules):
        energy, forces = reference_d3(structure)
        assert energy < -0.05  # dispersion binds: a visible term
        added = float(with_dispersion.values["energy"][i] - without.values["energy"][i])
        # the two codes take Bohr and Hartree from different CODATA releases
        assert added == pytest.approx(energy, rel=1e-6)
    reference_forces = torch.cat([reference_d3(s)[1] for s in molecules])
    torch.testing.assert_close(
        with_dispersion.forces["energy"],
        without.forces["energy"] + reference_forces,
        rtol=1e-6,
        atol=1e-8,
    )


def test_exported_energy_is_model_plus_d3_for_periodic_cells(model, exported):
    from metatomic.torch.dftd3 import DFTD3

    cells = read_bundled("carbon")[:2]
    with_dispersion = run_exported(exported, model.dataset_info.targets, cells)
    without = run(model, cells)
    # metatomic's DFTD3 alone, on systems with its own neighbour list
    alone = DFTD3(model.export(), damping_params={"energy": d3_pbe()})
    requests = alone.requested_neighbor_lists()
    for i, structure in enumerate(cells):
        system, _ = make_system(fresh(structure), requests, F64, CPU)
        d3 = float(alone._d3_energy(system, "energy", None)) * HARTREE
        assert d3 < -0.1
        got = float(with_dispersion.values["energy"][i])
        assert got == pytest.approx(float(without.values["energy"][i]) + d3, rel=1e-10)
    assert set(with_dispersion.stress) == {"energy"}  # stress still offered


def d3_pbe():
    from atomtrain.export import d3_damping

    return d3_damping("pbe")


def test_exported_model_records_the_functional(exported):
    metadata = exported.metadata()
    assert metadata.extra["atomtrain.d3"] == "PBE"
    assert "https://doi.org/10.1063/1.3382344" in metadata.references["implementation"]
    capabilities = exported.capabilities()
    assert capabilities.interaction_range == pytest.approx(50 * BOHR)


def test_unknown_functional_is_a_user_error(model):
    with pytest.raises(UserError, match="no D3 parameters for a functional") as error:
        with_d3(model.export(), "pbx")
    assert "pbe" in str(error.value)


def test_export_command_with_d3(model, tmp_path, capsys):
    from atomtrain.cli import main

    name = "soap_bpnn"
    documentation = import_documentation(name)
    training = resolve_hypers(
        documentation.TrainerHypers, {}, "architecture.training", name
    )
    trainer = import_architecture(name).__trainer__(training)
    checkpoint = str(tmp_path / "model.ckpt")
    trainer.save_checkpoint(model, checkpoint)
    output = str(tmp_path / "model-d3.pt")
    assert main(["export", checkpoint, "-o", output, "--d3", "r2scan"]) == 0
    loaded = load_atomistic_model(output)
    assert loaded.metadata().extra["atomtrain.d3"] == "r2scan"
    plain = str(tmp_path / "model.pt")
    assert main(["export", checkpoint, "-o", plain]) == 0
    assert "atomtrain.d3" not in load_atomistic_model(plain).metadata().extra
    capsys.readouterr()
    assert main(["export", checkpoint, "-o", output, "--d3", "pbx"]) != 0
    assert "no D3 parameters for a functional" in capsys.readouterr().err
