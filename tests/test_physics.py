"""Physics of the predictions of every in-tree architecture.

Forces and stress are derivatives of the energy, the energy has the symmetries of
physics and is smooth at the cutoff, and an exported model (loaded back, or
through ASE) predicts exactly what the in-memory model predicts. Everything runs
in float64 with a small untrained model whose weights, composition baseline and
scale are random (an untrained model is enough: these are properties of the
architecture, not of the fit).
"""

import numpy as np
import pytest
import torch
from metatensor.torch import Labels
from metatomic.torch import ModelOutput

from atomtrain.architectures.hypers import defaults_of
from atomtrain.architectures.registry import import_architecture, import_documentation
from atomtrain.data.info import DatasetInfo, TargetInfo
from atomtrain.data.structure import Structure
from atomtrain.data.systems import compute_neighbors, make_system
from atomtrain.testing.fixtures import fresh
from atomtrain.training.evaluate import predict


F64 = torch.float64
CPU = torch.device("cpu")
TARGETS = {"energy": TargetInfo("energy", gradients=["positions", "strain"])}


# ----------------------------------------------------------------------------
# fixtures and helpers


SMALL = {
    "soap_bpnn": {
        "soap": {"max_angular": 3, "max_radial": 4},
        "bpnn": {"num_neurons_per_layer": 32},
    },
    "gnn": {"width": 16, "num_vectors": 4, "num_heads": 2, "head_width": 16},
    "ace_mp": {"channels": 8, "l_max": 3, "radial_hidden": 8, "num_radial": 4},
}


@pytest.fixture(scope="module", params=sorted(SMALL))
def model(request):
    from atomtrain.architectures.hypers import deep_merge

    name = request.param
    hypers = deep_merge(
        defaults_of(import_documentation(name).ModelHypers), SMALL[name]
    )
    torch.manual_seed(12345)
    model_class = import_architecture(name).__model__
    model = model_class(hypers, DatasetInfo([1, 6, 8], dict(TARGETS))).to(F64).eval()
    with torch.no_grad():
        if name == "soap_bpnn":  # species channels that are not one-hot
            mixing = model.soap.species_mixing
            mixing.add_(0.2 * torch.randn_like(mixing))
        if name == "ace_mp":  # element weights of the products that differ
            for key, value in model.named_parameters():
                if ".products." in key:
                    value.add_(0.3 * torch.randn_like(value))
        baseline = model.heads["energy"].baseline  # a non-trivial baseline/scale
        baseline.composition.normal_()
        baseline.scale.fill_(1.7)
    return model


def cutoff_of(model) -> float:
    return float(model.requested_neighbor_lists()[0].cutoff)


@pytest.fixture(scope="module")
def ethanol(read_resource):
    structures, infos = read_resource(
        "ethanol_reduced_100.xyz",
        {"energy": {"key": "energy", "unit": "kcal/mol", "forces": {"key": "forces"}}},
    )
    assert infos["energy"].unit == "eV"
    return structures[:4]


@pytest.fixture(scope="module")
def carbon(read_resource):
    structures, infos = read_resource(
        "carbon_reduced_100.xyz",
        {"energy": {"key": "energy", "unit": "eV", "forces": {"key": "force"}}},
    )
    assert all(bool(s.pbc.all()) for s in structures[:4])
    return structures[:4]


def call_of(model):
    return lambda systems, outputs: model(systems, outputs, None)


def run(model, structures, call=None, requests=None):
    """Energies, forces and (periodic only) stress of ``structures``."""
    requests = model.requested_neighbor_lists() if requests is None else requests
    compute_neighbors(structures, requests)
    call = call_of(model) if call is None else call
    return predict(call, structures, requests, TARGETS, F64, CPU)


def energy(model, structure) -> float:
    values = run(model, [fresh(structure)]).values["energy"]
    assert values.shape == (1, 1)
    return float(values[0, 0])


def random_orthogonal(seed: int, proper: bool) -> torch.Tensor:
    q, r = np.linalg.qr(np.random.default_rng(seed).normal(size=(3, 3)))
    q = q * np.sign(np.diag(r))
    if (np.linalg.det(q) > 0) != proper:
        q[:, 0] *= -1
    return torch.tensor(q, dtype=F64)


def molecule(types, positions) -> Structure:
    return Structure(
        types=torch.tensor(types),
        positions=torch.tensor(positions, dtype=F64),
        cell=torch.zeros(3, 3, dtype=F64),
        pbc=torch.zeros(3, dtype=torch.bool),
    )


# ----------------------------------------------------------------------------
# 1. forces are minus the gradient of the energy


def _check_forces(model, structure, components, h=1e-5):
    forces = run(model, [fresh(structure)]).forces["energy"]
    assert forces.shape == (len(structure), 3)
    assert float(forces.abs().max()) > 1e-3  # a meaningful comparison
    for atom, axis in components:
        energies = []
        for sign in (1.0, -1.0):
            positions = structure.positions.clone()
            positions[atom, axis] += sign * h
            energies.append(energy(model, fresh(structure, positions)))
        numerical = -(energies[0] - energies[1]) / (2 * h)
        assert float(forces[atom, axis]) == pytest.approx(
            numerical, rel=1e-5, abs=1e-7
        ), (atom, axis)
    # and a random direction moving every atom at once
    direction = torch.randn(
        structure.positions.shape, generator=torch.Generator().manual_seed(7)
    ).to(F64)
    energies = [
        energy(model, fresh(structure, structure.positions + sign * h * direction))
        for sign in (1.0, -1.0)
    ]
    numerical = -(energies[0] - energies[1]) / (2 * h)
    assert float((forces * direction).sum()) == pytest.approx(
        numerical, rel=1e-5, abs=1e-7
    )


def test_forces_are_minus_energy_gradient_molecule(model, ethanol):
    _check_forces(model, ethanol[0], [(0, 0), (2, 1), (5, 2), (8, 0)])


def test_forces_are_minus_energy_gradient_periodic(model, carbon):
    # every component of a periodic cell: atoms interact with their own images
    structure = carbon[0]
    components = [(atom, axis) for atom in range(len(structure)) for axis in range(3)]
    _check_forces(model, structure, components)


def test_forces_of_a_batch_equal_forces_of_each_structure(model, ethanol, carbon):
    structures = [fresh(s) for s in ethanol[:2] + carbon[:2]]
    batch = run(model, structures)
    forces = [run(model, [fresh(s)]).forces["energy"] for s in structures]
    energies = [energy(model, s) for s in structures]
    torch.testing.assert_close(
        batch.values["energy"].reshape(-1), torch.tensor(energies, dtype=F64)
    )
    torch.testing.assert_close(batch.forces["energy"], torch.cat(forces))
    # a mixed batch (molecules + cells) has no stress
    assert "energy" not in batch.stress


# ----------------------------------------------------------------------------
# 2. stress is the strain derivative of the energy over the volume


@pytest.mark.parametrize("index", [0, 2])
def test_stress_is_strain_derivative(model, carbon, index):
    structure = carbon[index]
    result = run(model, [fresh(structure)])
    stress = result.stress["energy"]
    assert stress.shape == (1, 3, 3)
    stress = stress[0]
    assert float(stress.abs().max()) > 1e-4
    torch.testing.assert_close(stress, stress.T, atol=1e-10, rtol=0)
    volume = abs(float(torch.linalg.det(structure.cell)))
    h = 1e-5
    for i in range(3):
        for j in range(i, 3):
            energies = []
            for sign in (1.0, -1.0):
                strain = torch.eye(3, dtype=F64)
                strain[i, j] += sign * h / 2
                strain[j, i] += sign * h / 2
                deformed = fresh(
                    structure, structure.positions @ strain, structure.cell @ strain
                )
                energies.append(energy(model, deformed))
            numerical = (energies[0] - energies[1]) / (2 * h) / volume
            assert float(stress[i, j]) == pytest.approx(
                numerical, rel=1e-5, abs=1e-8
            ), (i, j)


def test_stress_of_a_batch_equal_stress_of_each_cell(model, carbon):
    batch = run(model, [fresh(s) for s in carbon])
    single = torch.cat([run(model, [fresh(s)]).stress["energy"] for s in carbon])
    torch.testing.assert_close(batch.stress["energy"], single)


# ----------------------------------------------------------------------------
# 3. symmetries: rotation, reflection, translation, permutation, periodicity


def _check_symmetries(model, structure):
    base = run(model, [fresh(structure)])
    e0 = float(base.values["energy"])
    f0 = base.forces["energy"]
    n = len(structure)
    order = torch.randperm(n, generator=torch.Generator().manual_seed(3))
    while n > 1 and bool((order == torch.arange(n)).all()):
        order = torch.roll(order, 1)
    shift = torch.tensor([0.37, -1.21, 2.53], dtype=F64)
    cases = {"translated": (fresh(structure, structure.positions + shift), f0)}
    cases["permuted"] = (fresh(structure, order=order), f0[order])
    for proper in (True, False):
        rotation = random_orthogonal(11 if proper else 12, proper)
        rotated = fresh(
            structure, structure.positions @ rotation.T, structure.cell @ rotation.T
        )
        cases[f"rotated (proper={proper})"] = (rotated, f0 @ rotation.T)
    for name, (variant, expected_forces) in cases.items():
        result = run(model, [variant])
        assert float(result.values["energy"]) == pytest.approx(e0, abs=1e-9), name
        torch.testing.assert_close(
            result.forces["energy"], expected_forces, atol=1e-9, rtol=0, msg=name
        )
    return base


def test_symmetries_molecule(model, ethanol):
    _check_symmetries(model, ethanol[1])


def test_symmetries_periodic(model, carbon):
    structure = carbon[1]
    base = _check_symmetries(model, structure)
    rotation = random_orthogonal(5, True)
    rotated = fresh(
        structure, structure.positions @ rotation.T, structure.cell @ rotation.T
    )
    rotated = run(model, [rotated])
    # the stress is a tensor: it rotates as R sigma R^T
    torch.testing.assert_close(
        rotated.stress["energy"][0],
        rotation @ base.stress["energy"][0] @ rotation.T,
        atol=1e-9,
        rtol=0,
    )
    # moving an atom by a lattice vector changes nothing
    positions = structure.positions.clone()
    positions[0] += structure.cell[0] - 2 * structure.cell[2]
    moved = run(model, [fresh(structure, positions)])
    assert float(moved.values["energy"]) == pytest.approx(
        float(base.values["energy"]), abs=1e-9
    )
    torch.testing.assert_close(moved.forces["energy"], base.forces["energy"])


def test_energy_is_extensive_in_supercells(model, carbon):
    structure = carbon[2]
    n = len(structure)
    cell = structure.cell
    positions = torch.cat([structure.positions, structure.positions + cell[1]])
    supercell = Structure(
        types=torch.cat([structure.types, structure.types]),
        positions=positions,
        cell=torch.stack([cell[0], 2 * cell[1], cell[2]]),
        pbc=structure.pbc.clone(),
    )
    base = run(model, [fresh(structure)])
    big = run(model, [supercell])
    assert float(big.values["energy"]) == pytest.approx(
        2 * float(base.values["energy"]), rel=1e-12, abs=1e-9
    )
    torch.testing.assert_close(big.forces["energy"][:n], base.forces["energy"])
    torch.testing.assert_close(big.forces["energy"][n:], base.forces["energy"])
    # intensive: the stress of the supercell is the stress of the cell
    torch.testing.assert_close(big.stress["energy"], base.stress["energy"])


# ----------------------------------------------------------------------------
# 4. smoothness at the cutoff


def test_dimer_energy_and_force_continuous_at_cutoff(model):
    cutoff = cutoff_of(model)
    direction = torch.tensor([0.48, -0.6, 0.64], dtype=F64)
    direction = direction / direction.norm()

    def dimer(distance):
        return molecule([6, 8], [[0.0, 0.0, 0.0], (distance * direction).tolist()])

    isolated = energy(model, molecule([6], [[0.0] * 3])) + energy(
        model, molecule([8], [[0.0] * 3])
    )
    inside = energy(model, dimer(cutoff - 1e-6))
    outside = energy(model, dimer(cutoff + 1e-6))
    assert inside == pytest.approx(outside, abs=1e-8)
    assert outside == pytest.approx(isolated, abs=1e-10)
    # the interaction is real well inside the cutoff ...
    assert abs(energy(model, dimer(cutoff - 1.0)) - isolated) > 1e-6
    # ... and the force decays smoothly to exactly zero at the cutoff
    magnitudes = []
    for gap in (0.3, 0.1, 1e-2, 1e-3, 1e-4):
        forces = run(model, [dimer(cutoff - gap)]).forces["energy"]
        # Newton's third law, along the bond
        torch.testing.assert_close(forces[0], -forces[1], atol=1e-12, rtol=0)
        along = float(forces[1] @ direction)
        torch.testing.assert_close(
            forces[1], along * direction, atol=1e-12 + 1e-9 * abs(along), rtol=0
        )
        magnitudes.append(abs(along))
    assert magnitudes[0] > 1e-6
    assert all(b < a for a, b in zip(magnitudes[1:], magnitudes[2:]))
    assert magnitudes[-1] < 1e-7
    beyond = run(model, [dimer(cutoff + 1e-4)]).forces["energy"]
    assert float(beyond.abs().max()) == 0.0


def test_atom_crossing_the_cutoff_of_a_molecule(model, ethanol):
    structure = ethanol[2]
    cutoff = cutoff_of(model)
    last = int(torch.argmax(structure.positions[:, 0]))
    anchor = structure.positions[last]

    def with_hydrogen(distance):
        position = anchor + torch.tensor([distance, 0.0, 0.0], dtype=F64)
        return Structure(
            types=torch.cat([structure.types, torch.tensor([1])]),
            positions=torch.cat([structure.positions, position.reshape(1, 3)]),
            cell=torch.zeros(3, 3, dtype=F64),
            pbc=torch.zeros(3, dtype=torch.bool),
        )

    inside = run(model, [with_hydrogen(cutoff - 1e-6)])
    outside = run(model, [with_hydrogen(cutoff + 1e-6)])
    assert float(inside.values["energy"]) == pytest.approx(
        float(outside.values["energy"]), abs=1e-8
    )
    torch.testing.assert_close(
        inside.forces["energy"], outside.forces["energy"], atol=1e-7, rtol=0
    )
    # beyond the cutoff the added atom does not interact at all
    separate = energy(model, structure) + energy(model, molecule([1], [[0.0] * 3]))
    assert float(outside.values["energy"]) == pytest.approx(separate, abs=1e-10)


# ----------------------------------------------------------------------------
# 5. exported model, per-atom energies and selected atoms


@pytest.fixture(scope="module")
def exported(model, tmp_path_factory):
    from metatomic.torch import load_atomistic_model

    from atomtrain.export import save_exported

    path = str(tmp_path_factory.mktemp("exported") / "model.pt")
    save_exported(model.export(), path)
    return path, load_atomistic_model(path)


def test_exported_model_matches_in_memory(model, exported, ethanol, carbon):
    from atomtrain.evaluation.models import model_call

    _, loaded = exported
    assert loaded.capabilities().dtype == "float64"
    for structures in (ethanol, carbon):
        direct = run(model, [fresh(s) for s in structures])
        saved = run(model, [fresh(s) for s in structures], model_call(loaded))
        assert set(saved.stress) == set(direct.stress)
        for field in ("values", "forces", "stress"):
            for name, expected in getattr(direct, field).items():
                torch.testing.assert_close(
                    getattr(saved, field)[name], expected, atol=1e-10, rtol=1e-12
                )
    assert "energy" in direct.stress


def _systems(model, structures):
    requests = model.requested_neighbor_lists()
    compute_neighbors(structures, requests)
    return [make_system(s, requests, F64, CPU)[0] for s in structures]


def _exported_eval(loaded, systems, outputs, selected=None):
    from metatomic.torch import ModelEvaluationOptions

    options = ModelEvaluationOptions(
        length_unit="angstrom", outputs=outputs, selected_atoms=selected
    )
    return loaded(systems, options, check_consistency=True)


def test_per_atom_energies_sum_to_total(model, exported, ethanol, carbon):
    _, loaded = exported
    structures = [fresh(s) for s in ethanol[:2] + carbon[:2]]
    systems = _systems(model, structures)
    total = {"energy": ModelOutput(unit="eV", sample_kind="system")}
    atomic = {"energy": ModelOutput(unit="eV", sample_kind="atom")}
    for evaluate in (
        lambda outputs, sel=None: model(systems, outputs, sel),
        lambda outputs, sel=None: _exported_eval(loaded, systems, outputs, sel),
    ):
        totals = evaluate(total)["energy"].block()
        block = evaluate(atomic)["energy"].block()
        assert totals.samples.names == ["system"]
        assert block.samples.names == ["system", "atom"]
        samples = block.samples.values
        assert samples.shape[0] == sum(len(s) for s in structures)
        sums = torch.zeros(len(structures), 1, dtype=F64)
        sums.index_add_(0, samples[:, 0].to(torch.long), block.values)
        torch.testing.assert_close(sums, totals.values, atol=1e-10, rtol=1e-12)
        # per-atom energies are not all equal (the test above means something)
        assert float(block.values.detach().std()) > 1e-3

        # selected atoms: every other atom of each system
        rows = [
            [i, a] for i, s in enumerate(structures) for a in range(len(s)) if a % 2
        ]
        selected = Labels(["system", "atom"], torch.tensor(rows, dtype=torch.int32))
        keep = samples[:, 1] % 2 == 1
        partial = evaluate(total, selected)["energy"].block().values
        expected = torch.zeros(len(structures), 1, dtype=F64)
        expected.index_add_(0, samples[keep, 0].to(torch.long), block.values[keep])
        torch.testing.assert_close(partial, expected, atol=1e-10, rtol=1e-12)
        selected_atomic = evaluate(atomic, selected)["energy"].block()
        assert selected_atomic.samples.values.tolist() == rows
        torch.testing.assert_close(
            selected_atomic.values, block.values[keep], atol=1e-12, rtol=0
        )


# ----------------------------------------------------------------------------
# 6. the ASE calculator


def _atoms(structure):
    import ase

    periodic = bool(structure.pbc.any())
    return ase.Atoms(
        numbers=structure.types.numpy(),
        positions=structure.positions.numpy(),
        cell=structure.cell.numpy() if periodic else None,
        pbc=structure.pbc.numpy(),
    )


def test_ase_calculator_matches_in_memory(model, exported, ethanol, carbon):
    from metatomic_ase import MetatomicCalculator

    path, _ = exported
    calculator = MetatomicCalculator(path, check_consistency=True)
    for structure in (ethanol[3], carbon[3]):
        expected = run(model, [fresh(structure)])
        atoms = _atoms(structure)
        atoms.calc = calculator
        assert atoms.get_potential_energy() == pytest.approx(
            float(expected.values["energy"]), abs=1e-9
        )
        np.testing.assert_allclose(
            atoms.get_forces(), expected.forces["energy"].numpy(), atol=1e-9, rtol=0
        )
        if "energy" in expected.stress:
            np.testing.assert_allclose(
                atoms.get_stress(voigt=False),
                expected.stress["energy"][0].numpy(),
                atol=1e-10,
                rtol=0,
            )
    assert "energy" in expected.stress  # the carbon cell had a stress
