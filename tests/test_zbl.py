"""ZBL short-range repulsion (``zbl: true``): the shared component against an
independent numpy implementation of the formula, the smooth switch, every
in-tree architecture (predictions are the model's without it plus the ZBL term,
in memory and exported), the baseline fit, and a short training on water."""

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.data import covalent_radii
from ase.neighborlist import neighbor_list

from atomtrain.architectures.hypers import deep_merge, defaults_of, resolve_hypers
from atomtrain.architectures.registry import import_architecture, import_documentation
from atomtrain.data.info import DatasetInfo, TargetInfo
from atomtrain.data.structure import Structure
from atomtrain.data.systems import make_system
from atomtrain.nn.zbl import ZblRepulsion
from atomtrain.testing.fixtures import fresh, read_bundled, run


F64 = torch.float64
CPU = torch.device("cpu")
TYPES = [1, 6, 8]


def targets(stress: bool = True) -> dict:
    gradients = ["positions", "strain"] if stress else ["positions"]
    return {"energy": TargetInfo("energy", gradients=gradients)}


# ----------------------------------------------------------------------------
# the reference: the ZBL formula in numpy, written again from its definition


def reference_pair(z1: int, z2: int, r):
    """Switched ZBL pair energy (eV) at distances ``r`` (Å)."""
    r = np.asarray(r, dtype=float)
    a = 0.46850 / (z1**0.23 + z2**0.23)
    x = r / a
    phi = (
        0.1818 * np.exp(-3.2 * x)
        + 0.5099 * np.exp(-0.9423 * x)
        + 0.2802 * np.exp(-0.4029 * x)
        + 0.02817 * np.exp(-0.2016 * x)
    )
    outer = covalent_radii[z1] + covalent_radii[z2]
    t = np.clip((r / outer - 0.6) / 0.4, 0.0, 1.0)
    smooth = 1.0 - (10.0 * t**3 - 15.0 * t**4 + 6.0 * t**5)
    return 14.3996454784936 * z1 * z2 / r * phi * smooth


def reference_slope(z1: int, z2: int, r, h: float = 1e-6):
    """dE/dr of :func:`reference_pair` by central differences."""
    r = np.asarray(r, dtype=float)
    return (reference_pair(z1, z2, r + h) - reference_pair(z1, z2, r - h)) / (2 * h)


def reference_repulsion(structure: Structure):
    """Energy, forces and stress (None for molecules) of the switched ZBL of
    every pair of ``structure``, from ASE's neighbour list."""
    atoms = Atoms(
        numbers=structure.types.numpy(),
        positions=structure.positions.numpy(),
        cell=structure.cell.numpy(),
        pbc=structure.pbc.numpy(),
    )
    numbers = atoms.numbers
    cutoff = 2 * max(covalent_radii[n] for n in numbers) + 0.1
    i, j, d, vectors = neighbor_list("ijdD", atoms, cutoff)  # both directions
    energy, slope = np.zeros(len(i)), np.zeros(len(i))
    for k in range(len(i)):
        energy[k] = reference_pair(numbers[i[k]], numbers[j[k]], d[k])
        slope[k] = reference_slope(numbers[i[k]], numbers[j[k]], d[k])
    forces = np.zeros((len(atoms), 3))
    # E = 1/2 sum over ordered pairs; F_i = sum_j dE/dr (r_j - r_i) / r
    np.add.at(forces, i, (slope / d)[:, None] * vectors)
    stress = None
    if atoms.pbc.all():
        virial = 0.5 * np.einsum("k,ka,kb->ab", slope / d, vectors, vectors)
        stress = virial / atoms.get_volume()
    return 0.5 * energy.sum(), forces, stress


# ----------------------------------------------------------------------------
# 1-2. the component alone, on dimers


def dimer(z1: int, z2: int, r: float) -> Structure:
    return Structure(
        types=torch.tensor([z1, z2]),
        positions=torch.tensor([[0.0, 0.0, 0.0], [r, 0.0, 0.0]], dtype=F64),
        cell=torch.zeros(3, 3, dtype=F64),
        pbc=torch.zeros(3, dtype=torch.bool),
    )


@pytest.fixture(scope="module")
def zbl():
    """The component with its own neighbour list (no model list to reuse)."""
    module = ZblRepulsion(DatasetInfo(TYPES, targets()), []).to(F64)
    assert module.own_list
    assert module.requested_neighbor_lists()[0].cutoff == pytest.approx(
        2 * covalent_radii[6]
    )
    return module


def energy_and_force(zbl, structure: Structure, dtype=F64):
    """Total energy and the force on the second atom along x."""
    requests = zbl.requested_neighbor_lists()
    system, positions = make_system(structure, requests, dtype, CPU, True)
    index = torch.searchsorted(torch.tensor(TYPES), structure.types)
    energy = zbl.atomic_energies([system], index).sum()
    (gradient,) = torch.autograd.grad(energy, positions)
    return float(energy.detach()), -float(gradient[1, 0]), -float(gradient[0, 0])


PAIRS = [(1, 1), (8, 8), (6, 8)]
FRACTIONS = [0.25, 0.45, 0.6, 0.7, 0.85, 0.97, 1.0, 1.2]  # of r_outer


@pytest.mark.parametrize("z1, z2", PAIRS)
def test_dimer_energy_and_force_match_the_formula(zbl, z1, z2):
    outer = covalent_radii[z1] + covalent_radii[z2]
    for fraction in FRACTIONS:
        r = fraction * outer
        energy, force, other = energy_and_force(zbl, dimer(z1, z2, r))
        want = float(reference_pair(z1, z2, r))
        assert energy == pytest.approx(want, rel=1e-10, abs=1e-12), fraction
        slope = float(reference_slope(z1, z2, r))
        assert force == pytest.approx(-slope, rel=1e-6, abs=1e-8), fraction
        assert other == pytest.approx(-force, rel=1e-12, abs=1e-14)
        if fraction < 1.0:
            assert energy > 0 and force > 0  # repulsive: pushes atom 2 to +x
        else:
            assert energy == 0.0 and force == 0.0


def test_float32_dimer():
    zbl = ZblRepulsion(DatasetInfo(TYPES, targets()), []).to(torch.float32)
    r = 0.5 * 1.32
    energy, force, _ = energy_and_force(zbl, dimer(8, 8, r), torch.float32)
    assert energy == pytest.approx(float(reference_pair(8, 8, r)), rel=1e-5)
    assert force == pytest.approx(-float(reference_slope(8, 8, r)), rel=1e-4)


@pytest.mark.parametrize("z1, z2", PAIRS)
def test_energy_and_force_go_smoothly_to_zero_at_r_outer(zbl, z1, z2):
    outer = covalent_radii[z1] + covalent_radii[z2]
    scale, _, _ = energy_and_force(zbl, dimer(z1, z2, 0.6 * outer))
    previous = None
    for delta in [1e-2, 1e-3, 1e-4]:
        energy, force, _ = energy_and_force(zbl, dimer(z1, z2, outer - delta))
        # C2 switch: E ~ delta^3 and F ~ delta^2 near r_outer
        assert 0 < energy < 1e4 * scale * delta**3
        assert 0 < force < 1e4 * scale * delta**2
        if previous is not None:
            assert energy < previous[0] / 500 and force < previous[1] / 50
        previous = (energy, force)
    for r in [outer, outer + 1e-9, outer + 0.3]:
        assert energy_and_force(zbl, dimer(z1, z2, r))[:2] == (0.0, 0.0)
    # the inner end: the force is continuous where the switch starts
    inner = 0.6 * outer
    below = energy_and_force(zbl, dimer(z1, z2, inner - 1e-7))
    above = energy_and_force(zbl, dimer(z1, z2, inner + 1e-7))
    assert above[1] == pytest.approx(below[1], rel=1e-5)


# ----------------------------------------------------------------------------
# 3. every architecture: the model without ZBL plus the ZBL term


SMALL = {
    "soap_bpnn": {
        "soap": {"max_angular": 2, "max_radial": 3, "cutoff": 4.0},
        "bpnn": {"num_neurons_per_layer": 16},
    },
    "gnn": {"width": 16, "num_vectors": 4, "num_heads": 2, "head_width": 16},
    "ace_mp": {"channels": 8, "l_max": 2, "radial_hidden": 8, "num_radial": 4},
    "experimental.mace": {
        "r_max": 4.0,
        "avg_num_neighbors": 8.0,
        "radial_MLP": [8],
        "MLP_irreps": "4x0e",
        "hidden_irreps": "4x0e + 4x1o",
        "correlation": 2,
        "max_ell": 1,
    },
}


def build(name: str, zbl: bool, extra: dict | None = None):
    documentation = import_documentation(name)
    hypers = deep_merge(defaults_of(documentation.ModelHypers), SMALL[name])
    hypers = deep_merge(hypers, {**(extra or {}), "zbl": zbl})
    torch.manual_seed(0)
    model_class = import_architecture(name).__model__
    model = model_class(hypers, DatasetInfo(TYPES, targets())).to(F64).eval()
    with torch.no_grad():
        for module in model.modules():
            if hasattr(module, "composition"):  # a non-trivial baseline
                module.composition.normal_()
                module.scale.fill_(1.7)
    return model


@pytest.fixture(scope="module")
def compressed():
    """Ethanol squeezed to 70 % and diamond-like carbon to 80 % of their
    sizes: bonded pairs inside the ZBL switch (none are at equilibrium)."""
    ethanol = [fresh(s, s.positions * 0.7) for s in read_bundled("ethanol")[:2]]
    carbon = [
        fresh(s, s.positions * 0.8, s.cell * 0.8) for s in read_bundled("carbon")[:2]
    ]
    return ethanol, carbon


def check_plus_zbl(with_zbl, without, structures):
    got = run(with_zbl, structures)
    base = run(without, structures)
    references = [reference_repulsion(s) for s in structures]
    energies = torch.tensor([[e] for e, _, _ in references], dtype=F64)
    assert float(energies.min()) > 1.0  # the test means something
    torch.testing.assert_close(
        got.values["energy"], base.values["energy"] + energies, rtol=1e-9, atol=1e-8
    )
    forces = torch.cat([torch.tensor(f) for _, f, _ in references])
    torch.testing.assert_close(
        got.forces["energy"], base.forces["energy"] + forces, rtol=1e-6, atol=1e-6
    )
    if "energy" in base.stress:
        stress = torch.stack([torch.tensor(s) for _, _, s in references])
        torch.testing.assert_close(
            got.stress["energy"], base.stress["energy"] + stress, rtol=1e-6, atol=1e-6
        )
    return got


@pytest.mark.parametrize("name", sorted(SMALL))
def test_model_with_zbl_is_model_without_plus_zbl(name, compressed, tmp_path):
    if name == "experimental.mace":
        pytest.importorskip("mace")
    from metatomic.torch import load_atomistic_model

    from atomtrain.evaluation.models import model_call
    from atomtrain.export import save_exported

    without = build(name, False)
    with_zbl = build(name, True)
    assert not with_zbl.zbl.own_list  # the model's cutoff covers H, C, O pairs
    assert with_zbl.requested_neighbor_lists() == without.requested_neighbor_lists()
    # no new weights: a checkpoint of one loads into the other
    with_zbl.load_state_dict(without.state_dict())
    path = str(tmp_path / "model.pt")
    save_exported(with_zbl.export(), path)
    loaded = load_atomistic_model(path)
    for structures in compressed:
        in_memory = check_plus_zbl(with_zbl, without, structures)
        exported = run(with_zbl, structures, call=model_call(loaded))
        for field in ("values", "forces", "stress"):
            for key, value in getattr(in_memory, field).items():
                torch.testing.assert_close(
                    getattr(exported, field)[key], value, rtol=1e-10, atol=1e-10
                )


def test_short_cutoff_gets_its_own_list(compressed):
    """A model cutoff below the largest r_outer: the repulsion asks for a list."""
    without = build("gnn", False, {"cutoff": 1.2})
    with_zbl = build("gnn", True, {"cutoff": 1.2})
    lists = with_zbl.requested_neighbor_lists()
    assert len(lists) == len(without.requested_neighbor_lists()) + 1
    assert float(lists[-1].cutoff) == pytest.approx(2 * covalent_radii[6])
    with_zbl.load_state_dict(without.state_dict())
    check_plus_zbl(with_zbl, without, compressed[0][:1])


# ----------------------------------------------------------------------------
# the baseline fit sees the learnt part only


def test_baseline_fit_subtracts_the_repulsion(compressed):
    from atomtrain.training.baseline_fit import WithoutRepulsion, fit_baselines

    info = DatasetInfo(TYPES, targets(stress=False))
    structures = [
        fresh(s, s.positions * factor)
        for s in read_bundled("ethanol")[:3]
        for factor in (0.65, 0.7, 0.75)
    ]
    repulsions = [reference_repulsion(s) for s in structures]
    for structure, (energy, forces, _) in zip(structures, repulsions):
        structure.targets["energy"] = torch.tensor([[-10.0 + energy]], dtype=F64)
        structure.forces["energy"] = torch.tensor(forces) + 0.5
    model = build("soap_bpnn", True)
    learnt = list(WithoutRepulsion(structures, model.zbl, info))
    for structure in learnt:
        assert float(structure.targets["energy"]) == pytest.approx(-10.0, abs=1e-8)
        torch.testing.assert_close(
            structure.forces["energy"], torch.full((9, 3), 0.5, dtype=F64)
        )
    assert float(structures[0].targets["energy"]) > -5  # the originals unchanged
    fit_baselines(model, structures, info)
    baseline = model.heads["energy"].baseline
    counts = torch.tensor([6.0, 2.0, 1.0], dtype=F64)  # C2H6O in types 1, 6, 8
    total = counts @ baseline.composition.reshape(3)
    assert float(total) == pytest.approx(-10.0, abs=1e-6)
    assert float(baseline.scale) == pytest.approx(0.5, rel=1e-6)


# ----------------------------------------------------------------------------
# 4. a short training on water, then two O atoms approaching


def test_trained_on_water_repulsive_at_short_distances(read_resource, tmp_path):
    structures, _ = read_resource(
        "water_10.xyz",
        {"energy": {"key": "energy", "unit": "eV", "forces": {"key": "forces"}}},
    )
    name = "soap_bpnn"
    arch = import_architecture(name)
    documentation = import_documentation(name)
    hypers = deep_merge(defaults_of(documentation.ModelHypers), SMALL[name])
    hypers["zbl"] = True
    training = resolve_hypers(
        documentation.TrainerHypers,
        {"num_epochs": 2, "batch_size": 4, "checkpoint_interval": 1000},
        "architecture.training",
        name,
    )
    torch.manual_seed(0)
    info = DatasetInfo([1, 8], targets(stress=False))
    model = arch.__model__(hypers, info)
    trainer = arch.__trainer__(training)
    trainer.train(model, F64, [CPU], [structures[:8]], [structures[8:]], str(tmp_path))
    model = model.eval()
    energies, forces = [], []
    for r in (1.0, 0.8, 0.6):
        batch = run(model, [dimer(8, 8, r)], targets=targets(stress=False))
        energies.append(float(batch.values["energy"][0, 0]))
        forces.append(batch.forces["energy"].numpy())
    assert energies[0] < energies[1] < energies[2], energies
    for f in forces:
        assert f[1, 0] > 0 and f[0, 0] < 0, f  # pushed apart along x
