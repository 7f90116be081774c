"""Long-range electrostatics (``long_range: {enable: true}``): the torch-pme
component against an Ewald sum and a direct sum written here in numpy, forces
as minus the gradient, invariance to the choice of supercell, exported equals
in memory, and a short training that exports."""

import itertools
import sys

import numpy as np
import pytest
import torch
from scipy.special import erfc

from atomtrain.architectures.hypers import deep_merge, defaults_of, resolve_hypers
from atomtrain.architectures.registry import import_architecture, import_documentation
from atomtrain.data.info import DatasetInfo, TargetInfo
from atomtrain.data.structure import Structure
from atomtrain.data.systems import make_system
from atomtrain.errors import UserError
from atomtrain.testing.fixtures import fresh, read_bundled, run


pytest.importorskip("torchpme")

from atomtrain.nn.long_range import LongRangeElectrostatics  # noqa: E402


F64 = torch.float64
CPU = torch.device("cpu")
COULOMB = 14.3996454784936  # e² / (4 π ε0) in eV Å


def energy_targets(stress: bool = True) -> dict:
    gradients = ["positions", "strain"] if stress else ["positions"]
    return {"energy": TargetInfo("energy", gradients=gradients)}


# ----------------------------------------------------------------------------
# the references, in numpy


def reference_ewald(positions, charges, cell, eta: float = 0.35) -> float:
    """Coulomb energy (eV) of point ``charges`` in a periodic ``cell`` (rows are
    the cell vectors): the classic Ewald split with screening ``erfc(eta r)``,
    both sums taken far past convergence (real space to 12 Å, reciprocal space
    to ``|k| = 12 eta``, terms below 1e-14 of the largest)."""
    inverse = np.linalg.inv(cell)
    volume = abs(np.linalg.det(cell))
    r_max = 12.0
    repeats = [
        int(np.ceil(r_max * np.linalg.norm(inverse[:, a]))) + 1 for a in range(3)
    ]
    real = 0.0
    for shift in itertools.product(*(range(-n, n + 1) for n in repeats)):
        d = positions[None, :, :] - positions[:, None, :] + np.array(shift) @ cell
        r = np.linalg.norm(d, axis=2)
        if not any(shift):
            np.fill_diagonal(r, np.inf)  # no self-interaction in the home cell
        inside = r < r_max
        pair = charges[:, None] * charges[None, :] * erfc(eta * r) / r
        real += 0.5 * pair[inside].sum()
    reciprocal_cell = 2 * np.pi * inverse.T  # rows: reciprocal vectors
    k_max = 12.0 * eta
    counts = [int(np.ceil(k_max / np.linalg.norm(b))) + 1 for b in reciprocal_cell]
    reciprocal = 0.0
    for m in itertools.product(*(range(-n, n + 1) for n in counts)):
        if not any(m):
            continue
        k = np.array(m) @ reciprocal_cell
        k2 = k @ k
        if k2 > k_max**2:
            continue
        structure_factor = np.sum(charges * np.exp(1j * positions @ k))
        weight = np.exp(-k2 / (4 * eta**2)) / k2
        reciprocal += 2 * np.pi / volume * weight * abs(structure_factor) ** 2
    self_energy = -eta / np.sqrt(np.pi) * np.sum(charges**2)
    return COULOMB * (real + reciprocal + self_energy)


def reference_direct(positions, charges) -> float:
    """Coulomb energy (eV) of point charges in vacuum, pair by pair."""
    energy = 0.0
    for i in range(len(charges)):
        for j in range(i + 1, len(charges)):
            r = np.linalg.norm(positions[j] - positions[i])
            energy += charges[i] * charges[j] / r
    return COULOMB * energy


# ----------------------------------------------------------------------------
# 1. the component, fed with given charges


def random_structure(periodic: bool, n_atoms: int = 16, seed: int = 0):
    """Random positions in a triclinic cell and charges summing to zero."""
    rng = np.random.default_rng(seed)
    cell = np.array([[6.0, 0.0, 0.0], [0.5, 5.5, 0.0], [0.3, -0.2, 7.0]])
    positions = rng.uniform(0, 1, (n_atoms, 3)) @ cell
    charges = rng.normal(size=n_atoms)
    charges -= charges.mean()
    structure = Structure(
        types=torch.tensor([1] * (n_atoms // 2) + [8] * (n_atoms - n_atoms // 2)),
        positions=torch.tensor(positions),
        cell=torch.tensor(cell) if periodic else torch.zeros(3, 3, dtype=F64),
        pbc=torch.full((3,), periodic),
    )
    return structure, positions, charges, cell


def component(**section) -> LongRangeElectrostatics:
    info = DatasetInfo([1, 8], energy_targets())
    return LongRangeElectrostatics(section, 4, info, []).to(F64)


def coulomb_energy(module, structure, charges, positions_grad=False):
    requests = module.requested_neighbor_lists()
    system, positions = make_system(structure, requests, F64, CPU, positions_grad)
    q = torch.tensor(charges).reshape(-1, 1)
    return module.coulomb_energies([system], q).sum(), positions


def test_ewald_equals_an_independent_ewald_sum():
    structure, positions, charges, cell = random_structure(periodic=True)
    want = reference_ewald(positions, charges, cell)
    assert abs(want) > 10.0  # a sizeable energy, so the comparison means something
    module = component()  # the defaults users get
    energy, _ = coulomb_energy(module, structure, charges)
    assert float(energy) == pytest.approx(want, rel=1e-6)


def test_p3m_for_large_cells_agrees_to_its_mesh_accuracy():
    structure, positions, charges, cell = random_structure(periodic=True)
    want = reference_ewald(positions, charges, cell)
    module = component(ewald_max_atoms=4)  # 16 atoms: P3M
    energy, _ = coulomb_energy(module, structure, charges)
    assert float(energy) == pytest.approx(want, rel=2e-4)
    finer = component(ewald_max_atoms=4, mesh_spacing=0.2)
    energy, _ = coulomb_energy(finer, structure, charges)
    assert float(energy) == pytest.approx(want, rel=2e-5)


def test_molecules_use_the_direct_sum():
    structure, positions, charges, _ = random_structure(periodic=False, n_atoms=9)
    energy, _ = coulomb_energy(component(), structure, charges)
    assert float(energy) == pytest.approx(reference_direct(positions, charges), 1e-12)


def test_forces_are_minus_the_gradient():
    structure, positions, charges, _ = random_structure(periodic=True, n_atoms=8)
    module = component()
    energy, leaf = coulomb_energy(module, structure, charges, positions_grad=True)
    (gradient,) = torch.autograd.grad(energy, leaf)
    h = 1e-5
    for atom, axis in [(0, 0), (3, 1), (7, 2)]:
        shifted = []
        for sign in (1, -1):
            moved = fresh(structure, structure.positions.clone())
            moved.positions[atom, axis] += sign * h
            shifted.append(float(coulomb_energy(module, moved, charges)[0]))
        slope = (shifted[0] - shifted[1]) / (2 * h)
        assert float(gradient[atom, axis]) == pytest.approx(slope, rel=1e-6, abs=1e-7)


def test_partly_periodic_structures_are_refused():
    structure, _, charges, cell = random_structure(periodic=True, n_atoms=4)
    structure.pbc = torch.tensor([True, True, False])
    structure.cell[2] = 0.0  # a slab: no third cell vector
    with pytest.raises(ValueError, match="periodic in some only"):
        coulomb_energy(component(), structure, charges)


def test_missing_torch_pme_is_a_user_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "torchpme", None)  # import fails
    with pytest.raises(UserError, match=r"atomtrain\[long-range\]"):
        component()


# ----------------------------------------------------------------------------
# 2. in the models


def exported_call(model):
    """Call an exported model as the in-memory one is called by ``run``."""
    from metatomic.torch import ModelEvaluationOptions

    def call(systems, outputs):
        options = ModelEvaluationOptions(length_unit="angstrom", outputs=outputs)
        return model(systems, options, check_consistency=True)

    return call


SMALL = {
    "soap_bpnn": {
        "soap": {"max_angular": 2, "max_radial": 3, "cutoff": 4.0},
        "bpnn": {"num_neurons_per_layer": 16},
    },
    "ace_mp": {"channels": 8, "l_max": 2, "radial_hidden": 8, "num_radial": 4},
}
ARCHITECTURES = sorted(SMALL)


def build(name: str, long_range: bool, types=(1, 6, 8), stress: bool = True):
    documentation = import_documentation(name)
    hypers = deep_merge(defaults_of(documentation.ModelHypers), SMALL[name])
    hypers["long_range"]["enable"] = long_range
    torch.manual_seed(0)
    info = DatasetInfo(list(types), energy_targets(stress))
    model = import_architecture(name).__model__(hypers, info).to(F64).eval()
    if long_range:
        with torch.no_grad():  # charges of order one: a visible Coulomb energy
            model.long_range.charges.weight.mul_(10.0)
    return model


@pytest.fixture(scope="module")
def water(request):
    from atomtrain.data.dataset import read_dataset
    from atomtrain.options.expand import expand_dataset
    from atomtrain.options.schema import DatasetSection
    from atomtrain.options.validation import validate

    path = request.path.parent / "resources" / "water_10.xyz"
    targets = {"energy": {"key": "energy", "unit": "eV", "forces": {"key": "forces"}}}
    section = expand_dataset({"systems": str(path), "targets": targets}, "water")
    structures, _ = read_dataset(validate(DatasetSection, section).model_dump(), {})
    return structures


def supercell(structure: Structure) -> Structure:
    """The 2 x 1 x 1 supercell of ``structure``."""
    shift = structure.positions + structure.cell[0]
    cell = structure.cell.clone()
    cell[0] *= 2
    return Structure(
        types=torch.cat([structure.types, structure.types]),
        positions=torch.cat([structure.positions, shift]),
        cell=cell,
        pbc=structure.pbc.clone(),
    )


@pytest.mark.parametrize("name", ARCHITECTURES)
@pytest.mark.parametrize("method", ["ewald", "p3m"])
def test_supercell_energy_is_twice_the_cell_energy(name, method, water):
    model = build(name, True, types=(1, 8), stress=False)
    # 192 and 384 atoms: P3M by default, Ewald when allowed that many atoms
    model.long_range.ewald_max_atoms = 1000 if method == "ewald" else 64
    without = build(name, False, types=(1, 8), stress=False)
    without.load_state_dict(model.state_dict(), strict=False)
    cell = water[0]
    one = run(model, [cell])
    two = run(model, [supercell(cell)])
    coulomb = float(one.values["energy"]) - float(run(without, [cell]).values["energy"])
    assert abs(coulomb) > 1.0  # the long-range part is a real part of the energy
    assert float(two.values["energy"]) == pytest.approx(
        2 * float(one.values["energy"]), rel=1e-9
    )
    forces = two.forces["energy"]
    torch.testing.assert_close(forces[: len(cell)], one.forces["energy"])
    torch.testing.assert_close(forces[len(cell) :], one.forces["energy"])


@pytest.mark.parametrize("name", ARCHITECTURES)
def test_model_forces_and_stress_are_derivatives(name):
    model = build(name, True)
    structure = read_bundled("carbon")[0]
    batch = run(model, [structure])

    def energy(s):
        return float(run(model, [s]).values["energy"])

    h = 1e-5
    for atom, axis in [(0, 0), (3, 2)]:
        values = []
        for sign in (1, -1):
            positions = structure.positions.clone()
            positions[atom, axis] += sign * h
            values.append(energy(fresh(structure, positions)))
        force = -(values[0] - values[1]) / (2 * h)
        assert float(batch.forces["energy"][atom, axis]) == pytest.approx(
            force, rel=1e-5, abs=1e-6
        )
    # stress: the derivative with respect to a strain, over the volume
    volume = float(torch.det(structure.cell))
    values = []
    for sign in (1, -1):
        strain = torch.eye(3, dtype=F64)
        strain[0, 1] += sign * h
        strain[1, 0] += sign * h
        values.append(
            energy(
                fresh(structure, structure.positions @ strain, structure.cell @ strain)
            )
        )
    stress_01 = (values[0] - values[1]) / (4 * h) / volume
    assert float(batch.stress["energy"][0, 0, 1]) == pytest.approx(
        stress_01, rel=1e-5, abs=1e-8
    )


@pytest.mark.parametrize("name", ARCHITECTURES)
def test_exported_equals_in_memory(name, tmp_path):
    from metatomic.torch import load_atomistic_model

    from atomtrain.evaluation.models import model_call
    from atomtrain.export import save_exported

    model = build(name, True)
    path = str(tmp_path / "model.pt")
    save_exported(model.export(), path)
    loaded = load_atomistic_model(path)
    assert loaded.capabilities().interaction_range == float("inf")
    structures = read_bundled("carbon")[:2] + read_bundled("ethanol")[:2]
    for group in (structures[:2], structures[2:]):  # periodic, then molecules
        got = run(model, group, call=model_call(loaded))
        want = run(model, group)
        for field in ("values", "forces", "stress"):
            for key, value in getattr(want, field).items():
                torch.testing.assert_close(
                    getattr(got, field)[key], value, rtol=1e-10, atol=1e-10
                )


def test_training_with_long_range_then_export(water, tmp_path):
    from metatomic.torch import load_atomistic_model

    from atomtrain.export import save_exported
    from atomtrain.training.checkpoints import read_checkpoint

    name = "soap_bpnn"
    arch = import_architecture(name)
    documentation = import_documentation(name)
    hypers = deep_merge(defaults_of(documentation.ModelHypers), SMALL[name])
    hypers["long_range"]["enable"] = True
    training = resolve_hypers(
        documentation.TrainerHypers,
        {"num_epochs": 2, "batch_size": 4, "checkpoint_interval": 1000},
        "architecture.training",
        name,
    )
    torch.manual_seed(0)
    model = arch.__model__(hypers, DatasetInfo([1, 8], energy_targets(False)))
    before = model.long_range.charges.weight.detach().clone()
    trainer = arch.__trainer__(training)
    trainer.train(model, F64, [CPU], [water[:8]], [water[8:]], str(tmp_path))
    assert not torch.equal(model.long_range.charges.weight.detach(), before)
    trainer.save_checkpoint(model, str(tmp_path / "model.ckpt"))
    checkpoint = read_checkpoint(str(tmp_path / "model.ckpt"))
    loaded = arch.__model__.load_checkpoint(checkpoint, "export")
    assert loaded.long_range is not None
    path = str(tmp_path / "model.pt")
    save_exported(loaded.export(), path)
    exported = load_atomistic_model(path)
    assert "energy" in exported.capabilities().outputs
