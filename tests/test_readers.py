"""Placeholder boxes of molecules: public extended XYZ files (rMD17, MACE examples)
give molecules ``Lattice="50 0 0 0 50 0 0 0 50"`` with ``pbc="F F F"``. The cell
vector along every non-periodic direction is read as zero, whichever way the
structure comes in (files, packed stores, eval), and stress is refused on
structures that are not periodic."""

from __future__ import annotations

import os

import ase.io
import numpy as np
import pytest
import torch
import yaml

from atomtrain.cli import main
from atomtrain.data.dataset import read_dataset
from atomtrain.data.packed import PackedStore, PackedWriter, StoredTarget
from atomtrain.data.packing import pack
from atomtrain.data.structure import Structure
from atomtrain.data.systems import make_system
from atomtrain.errors import UserError
from atomtrain.options.expand import expand_dataset
from atomtrain.options.schema import DatasetSection
from atomtrain.options.validation import validate


RESOURCES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "resources")
ETHANOL = os.path.join(RESOURCES, "ethanol_reduced_100.xyz")
TARGETS = {"energy": {"key": "energy", "unit": "kcal/mol", "forces": {"key": "forces"}}}
BOX = 50.0 * np.eye(3)
F64 = torch.float64
CPU = torch.device("cpu")


def write_ethanol(path: str, n: int, cell=None, pbc=False) -> list:
    """The first ``n`` ethanol molecules, with ``cell`` and ``pbc`` set."""
    frames = ase.io.read(ETHANOL, f":{n}")
    for atoms in frames:
        if cell is not None:
            atoms.cell = cell
        atoms.pbc = pbc
    ase.io.write(path, frames, format="extxyz")
    return frames


def read(path: str, targets=None) -> list:
    section = {"systems": path, "targets": TARGETS if targets is None else targets}
    section = validate(DatasetSection, expand_dataset(section, "x")).model_dump()
    structures, _ = read_dataset(section, {})
    return list(structures)


def assert_metatomic_accepts(structure: Structure) -> None:
    """metatomic refuses a non-zero cell vector along a non-periodic direction."""
    system, _ = make_system(structure, [], F64, CPU)
    assert torch.equal(system.cell, structure.cell)


def test_molecules_in_a_box_read_with_zero_cell(tmp_path):
    boxed, plain = str(tmp_path / "boxed.xyz"), str(tmp_path / "plain.xyz")
    write_ethanol(boxed, 3, cell=BOX)
    write_ethanol(plain, 3)
    with open(boxed) as file:
        assert 'Lattice="50.0 0.0 0.0 0.0 50.0 0.0 0.0 0.0 50.0"' in file.read()
    assert ase.io.read(boxed).cell.volume == pytest.approx(50.0**3)

    structures, reference = read(boxed), read(plain)
    assert len(structures) == 3
    for structure, expected in zip(structures, reference):
        assert torch.equal(structure.cell, torch.zeros(3, 3, dtype=F64))
        assert not structure.pbc.any()
        assert torch.equal(structure.positions, expected.positions)
        assert torch.equal(structure.targets["energy"], expected.targets["energy"])
        assert torch.equal(structure.forces["energy"], expected.forces["energy"])
        assert_metatomic_accepts(structure)


def test_mixed_pbc_keeps_the_periodic_vectors(tmp_path):
    path = str(tmp_path / "slab.xyz")
    cell = np.array([[10.0, 0.0, 0.0], [1.0, 12.0, 0.0], [0.5, 0.5, 50.0]])
    write_ethanol(path, 2, cell=cell, pbc=[True, True, False])
    with open(path) as file:
        assert 'pbc="T T F"' in file.read()
    for structure in read(path):
        assert structure.pbc.tolist() == [True, True, False]
        expected = torch.tensor(cell)
        expected[2] = 0.0
        assert torch.equal(structure.cell, expected)
        assert_metatomic_accepts(structure)


def test_zero_cell_in_structures_built_directly():
    """Every Structure goes through the same rule (readers, packed stores,
    fixtures); a periodic cell is left untouched, the very same tensor."""
    cell = torch.tensor(np.diag([10.0, 11.0, 50.0]))
    molecule = Structure(
        types=torch.tensor([1, 1]),
        positions=torch.tensor([[0.0, 0.0, 0.0], [0.0, 0.0, 0.8]], dtype=F64),
        cell=cell.clone(),
        pbc=torch.tensor([False, False, False]),
    )
    assert torch.equal(molecule.cell, torch.zeros(3, 3, dtype=F64))
    wire = Structure(
        types=molecule.types,
        positions=molecule.positions,
        cell=cell,
        pbc=torch.tensor([False, False, True]),
    )
    assert torch.equal(wire.cell, torch.tensor(np.diag([0.0, 0.0, 50.0])))
    assert torch.equal(cell, torch.tensor(np.diag([10.0, 11.0, 50.0])))  # a copy
    bulk = Structure(
        types=molecule.types,
        positions=molecule.positions,
        cell=cell,
        pbc=torch.tensor([True, True, True]),
    )
    assert bulk.cell is cell


def test_packed_stores_give_zero_cells(tmp_path):
    boxed = str(tmp_path / "boxed.xyz")
    write_ethanol(boxed, 3, cell=BOX)
    store = str(tmp_path / "boxed.atd")
    pack([boxed], store, {"targets": TARGETS})
    packed = read(store, targets={"energy": {}})
    for structure, expected in zip(packed, read(boxed)):
        assert torch.equal(structure.cell, torch.zeros(3, 3, dtype=F64))
        assert torch.equal(structure.positions, expected.positions)
        assert_metatomic_accepts(structure)

    # a store written before cells were zeroed on reading holds the 50 Å box;
    # its molecules still read with a zero cell
    legacy = str(tmp_path / "legacy.atd")
    stored = {"energy": StoredTarget("energy", "eV", False, 1, True, False)}
    with PackedWriter(legacy, stored, [boxed]) as writer:
        for index, structure in enumerate(packed):
            structure.cell = torch.tensor(BOX)  # after construction: kept as is
            writer.add(structure, 0, index)
    assert np.array_equal(PackedStore(legacy).record(0)[2], BOX)
    for structure in read(legacy, targets={"energy": {}}):
        assert torch.equal(structure.cell, torch.zeros(3, 3, dtype=F64))
        assert_metatomic_accepts(structure)


@pytest.mark.parametrize("gradient", ["stress", "virial"])
def test_stress_of_a_molecule_is_refused(tmp_path, gradient):
    path = str(tmp_path / "stressed.xyz")
    frames = ase.io.read(ETHANOL, ":3")
    for atoms in frames:
        atoms.cell, atoms.pbc = BOX, False
    frames[1].info["my_stress"] = np.arange(6, dtype=float)
    ase.io.write(path, frames, format="extxyz")
    targets = {"energy": {**TARGETS["energy"], gradient: {"key": "my_stress"}}}
    with pytest.raises(UserError) as error:
        read(path, targets)
    message = str(error.value)
    assert f"structure 1 of '{path}'" in message
    assert f"has a {gradient} (key 'my_stress')" in message
    assert 'pbc="F F F"' in message and "only periodic" in message


@pytest.fixture(scope="module")
def trained_on_boxes(tmp_path_factory):
    """A tiny model trained on ethanol molecules in 50 Å boxes."""
    folder = tmp_path_factory.mktemp("boxes")
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(folder)
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        write_ethanol("boxed.xyz", 10, cell=BOX)
        write_ethanol("plain.xyz", 10)
        options = {
            "architecture": {
                "name": "soap_bpnn",
                "model": {
                    "soap": {"max_radial": 2, "max_angular": 1, "cutoff": 3.0},
                    "bpnn": {"num_hidden_layers": 1, "num_neurons_per_layer": 4},
                },
                "training": {"num_epochs": 2},
            },
            "training_set": {"systems": "boxed.xyz", "targets": TARGETS},
            "validation_set": 0.2,
            "seed": 3,
        }
        with open("options.yaml", "w") as file:
            yaml.safe_dump(options, file)
        try:
            code = main(["train", "options.yaml", "--output-dir", "run"])
        finally:
            torch.set_num_threads(threads)
        assert code == 0
    return folder


def test_train_on_molecules_in_boxes(trained_on_boxes, capsys):
    for name in ("model.ckpt", "model.pt"):
        assert os.path.isfile(trained_on_boxes / "run" / name), name
    with open(trained_on_boxes / "run" / "train.log") as file:
        assert "training finished" in file.read()


def test_exported_model_ignores_the_box(trained_on_boxes, monkeypatch):
    monkeypatch.chdir(trained_on_boxes)
    model = os.path.join("run", "model.pt")
    assert main(["eval", model, "boxed.xyz", "-o", "boxed_predictions.xyz"]) == 0
    assert main(["eval", model, "plain.xyz", "-o", "plain_predictions.xyz"]) == 0
    boxed = ase.io.read("boxed_predictions.xyz", ":")
    plain = ase.io.read("plain_predictions.xyz", ":")
    assert len(boxed) == len(plain) == 10
    for a, b in zip(boxed, plain):
        assert not a.pbc.any() and not a.cell.any()
        assert a.get_potential_energy() == b.get_potential_energy()
        np.testing.assert_array_equal(a.get_forces(), b.get_forces())


def _strain_derivative(atoms, step: float = 1e-5) -> np.ndarray:
    """dE/dε by central differences of EMT energies under symmetric strains,
    positions carried with the cell (as ASE defines its stress)."""
    from ase.calculators.emt import EMT

    derivative = np.zeros((3, 3))
    for i in range(3):
        for j in range(i, 3):
            direction = np.zeros((3, 3))
            direction[i, j] = direction[j, i] = 1.0 if i == j else 0.5
            energies = []
            for sign in (1.0, -1.0):
                strained = atoms.copy()
                strained.set_cell(
                    atoms.cell.array @ (np.eye(3) + sign * step * direction),
                    scale_atoms=True,
                )
                strained.calc = EMT()
                energies.append(strained.get_potential_energy())
            derivative[i, j] = derivative[j, i] = (energies[0] - energies[1]) / (
                2 * step
            )
    return derivative


def test_stress_and_virial_conventions_follow_the_strain_derivative(tmp_path):
    """stress = (1/V) dE/dε (ASE) and virial = -dE/dε (DeePMD-kit, MACE): a
    file giving either, in any units, is read as the same stress in eV/Å³,
    equal to the numerical strain derivative and to EMT's analytic stress."""
    from ase.build import bulk
    from ase.calculators.emt import EMT
    from ase.units import Bohr, kcal, mol

    atoms = bulk("Cu", "fcc", a=3.6, cubic=True)
    atoms.set_cell(atoms.cell.array @ [[1, 0.03, 0], [0, 0.98, 0.02], [0.01, 0, 1.01]],
                   scale_atoms=True)  # fmt: skip
    atoms.rattle(0.05, seed=0)
    derivative = _strain_derivative(atoms)
    volume = atoms.get_volume()
    atoms.calc = EMT()
    analytic = atoms.get_stress(voigt=False)
    np.testing.assert_allclose(derivative / volume, analytic, atol=1e-8)

    energy_unit, length_unit = kcal / mol, Bohr  # the file's units, in eV and Å
    labelled = atoms.copy()
    labelled.positions /= length_unit
    labelled.cell = atoms.cell.array / length_unit
    labelled.info["energy"] = atoms.get_potential_energy() / energy_unit
    labelled.info["virial"] = -derivative / energy_unit
    labelled.info["pressure_tensor"] = derivative / volume / energy_unit * Bohr**3
    path = str(tmp_path / "cu.xyz")
    ase.io.write(path, [labelled], format="extxyz")

    def stress_read(gradient: dict) -> np.ndarray:
        section = {
            "systems": {"read_from": path, "length_unit": "bohr"},
            "targets": {"energy": {"unit": "kcal/mol", "forces": False, **gradient}},
        }
        section = validate(DatasetSection, expand_dataset(section, "x")).model_dump()
        (structure,), _ = read_dataset(section, {})
        return structure.stress["energy"].numpy()

    from_virial = stress_read({})  # read when present: the virial
    from_stress = stress_read({"stress": "pressure_tensor", "virial": False})
    # rtol: ASE's and metatomic's bohr and kcal/mol differ in the 9th digit
    np.testing.assert_allclose(from_virial, derivative / volume, rtol=1e-7, atol=1e-12)
    np.testing.assert_allclose(from_stress, derivative / volume, rtol=1e-7, atol=1e-12)
    np.testing.assert_allclose(from_virial, analytic, atol=1e-8)
