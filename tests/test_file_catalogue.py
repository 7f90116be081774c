"""The field's files load as published, with the same options syntax.

``tests/resources/catalogue/`` holds the same structures in each kind of source
the readers accept (written by ``make_catalogue.py`` with ASE, ase.db and
dpdata): extended XYZ with ASE's keys and with MACE's ``REF_`` keys (stress or
virial), ASE databases (labels as calculator results, or as key-value pairs
and row data), DeePMD-kit folders (``deepmd/npy``, ``deepmd/raw``, several
systems, and the mixed-type layout). Every source must give identical
structures, energies, forces and stresses, in memory and through ``atomtrain
data pack``.
"""

from __future__ import annotations

import os
import shutil
import sys

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.calculators.emt import EMT

from atomtrain.cli import main
from atomtrain.data.dataset import read_dataset
from atomtrain.data.packing import pack
from atomtrain.data.units import conversion_factor
from atomtrain.errors import UserError
from atomtrain.options.expand import expand_dataset
from atomtrain.options.schema import DatasetSection
from atomtrain.options.validation import validate


CATALOGUE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "resources",
                         "catalogue")  # fmt: skip
BULK = ["bulk.xyz", "bulk_mace_stress.xyz", "bulk_mace_virial.xyz", "bulk.db",
        "bulk_kvp.db", "bulk_deepmd", "bulk_deepmd_raw"]  # fmt: skip
ETHANOL = ["ethanol.xyz", "ethanol.db", "ethanol_deepmd", "ethanol_deepmd_raw"]
KCAL = {"energy": {"unit": "kcal/mol"}}


def source(name: str) -> str:
    return os.path.join(CATALOGUE, name)


def read(path: str, targets=None) -> list:
    """Structures of ``path`` read from options written as a user would."""
    section = {"systems": {"read_from": path}}
    if targets is not None:
        section["targets"] = targets
    else:
        section = path  # the short form: energy, with what the file has
    section = validate(DatasetSection, expand_dataset(section, "x")).model_dump()
    structures, infos = read_dataset(section, {})
    return list(structures), infos


def skip_without_dpdata(name: str) -> None:
    if "deepmd" in name:
        pytest.importorskip("dpdata")


def assert_same(structures, reference, gradients=("forces", "stress")) -> None:
    assert len(structures) == len(reference)
    for got, expected in zip(structures, reference):
        assert torch.equal(got.types, expected.types)
        assert torch.equal(got.pbc, expected.pbc)
        for field in ("positions", "cell"):
            torch.testing.assert_close(
                getattr(got, field), getattr(expected, field), rtol=0, atol=1e-12
            )
        torch.testing.assert_close(
            got.targets["energy"], expected.targets["energy"], rtol=1e-14, atol=0
        )
        for gradient in gradients:
            torch.testing.assert_close(
                getattr(got, gradient)["energy"],
                getattr(expected, gradient)["energy"],
                rtol=1e-12,
                atol=1e-14,
            )


def test_reference_file_holds_emt_labels():
    """The catalogue's reference is right: EMT recomputed on the structures read
    gives the stored energies, forces and stress (ASE's sign convention)."""
    structures, infos = read(source("bulk.xyz"))
    assert infos["energy"].gradients == ["positions", "strain"]
    assert len(structures) == 5
    for structure in structures:
        atoms = Atoms(
            numbers=structure.types.numpy(),
            positions=structure.positions.numpy(),
            cell=structure.cell.numpy(),
            pbc=True,
        )
        atoms.calc = EMT()
        assert float(structure.targets["energy"]) == pytest.approx(
            atoms.get_potential_energy(), abs=1e-12
        )
        np.testing.assert_allclose(
            structure.forces["energy"].numpy(), atoms.get_forces(), rtol=0, atol=5e-9
        )  # forces are stored to 8 decimals
        np.testing.assert_allclose(
            structure.stress["energy"].numpy(),
            atoms.get_stress(voigt=False),
            atol=1e-12,
        )


@pytest.mark.parametrize("name", BULK[1:])
def test_periodic_sources_read_the_same(name):
    """Short form (``training_set: FILE``): MACE's REF_ keys, virials, database
    rows and DeePMD folders all give the reference's labels."""
    skip_without_dpdata(name)
    reference, _ = read(source("bulk.xyz"))
    structures, infos = read(source(name))
    assert infos["energy"].gradients == ["positions", "strain"]
    assert_same(structures, reference)


@pytest.mark.parametrize("name", ETHANOL)
def test_molecule_sources_read_the_same_with_units(name):
    """Molecules in a 50 Å placeholder box, energies in kcal/mol: the cell is
    dropped and the unit converted whatever the source."""
    skip_without_dpdata(name)
    reference, _ = read(source("ethanol.xyz"), KCAL)
    structures, infos = read(source(name), KCAL)
    assert infos["energy"].gradients == ["positions"]
    assert_same(structures, reference, gradients=("forces",))
    factor = conversion_factor("kcal/mol", "eV", "test")
    first = float(structures[0].targets["energy"])
    assert first == pytest.approx(-97079.92222178938 * factor, rel=1e-14)
    for structure in structures:
        assert torch.equal(structure.cell, torch.zeros(3, 3, dtype=torch.float64))
        assert not structure.pbc.any()


def test_mace_keys_in_the_long_form():
    """``energy: {key: REF_energy}`` finds REF_forces and REF_virial by the
    prefix; a key written in the options is read as written."""
    reference, _ = read(source("bulk.xyz"))
    structures, _ = read(
        source("bulk_mace_virial.xyz"), {"energy": {"key": "REF_energy"}}
    )
    assert_same(structures, reference)
    structures, infos = read(
        source("bulk_mace_stress.xyz"),
        {"energy": {"key": "REF_energy", "stress": False}},
    )
    assert infos["energy"].gradients == ["positions"]
    assert structures[0].stress == {}
    with pytest.raises(UserError, match="no key 'forces'|has the key 'forces'"):
        read(
            source("bulk_mace_stress.xyz"),
            {"energy": {"key": "REF_energy", "forces": "forces"}},
        )


def test_deepmd_mixed_type_folder():
    """DeePMD-kit's mixed-type layout (one folder for Cu4 and AuCu3 frames, per
    frame types in real_atom_types.npy): dpdata groups frames by composition."""
    pytest.importorskip("dpdata")
    reference, _ = read(source("bulk.xyz"))
    structures, _ = read(source("bulk_deepmd_mixed"))
    compositions = sorted(s.types.tolist() for s in structures)
    assert compositions == [[29] * 4] * 3 + [[79, 29, 29, 29]] * 2

    def by_energy(structures):
        return sorted(structures, key=lambda s: float(s.targets["energy"]))

    assert_same(by_energy(structures), by_energy(reference))


def test_a_single_deepmd_system_folder():
    pytest.importorskip("dpdata")
    reference, _ = read(source("bulk.xyz"))
    structures, _ = read(source(os.path.join("bulk_deepmd", "Au0Cu4")))
    assert_same(structures, reference[:3])
    assert all(s.types.tolist() == [29] * 4 for s in structures)


@pytest.mark.parametrize("name", [*BULK, "bulk_deepmd_mixed"])
def test_packing_accepts_every_source(tmp_path, name):
    skip_without_dpdata(name)
    in_memory, _ = read(source(name))
    store = str(tmp_path / "packed.atd")
    stored = pack([source(name)], store, {"targets": {"energy": {}}})
    assert (stored["energy"].n_forces, stored["energy"].n_stress) == (5, 5)
    packed, _ = read(store, {"energy": {}})
    assert_same(packed, in_memory)


def test_pack_command_with_a_deepmd_folder(tmp_path):
    pytest.importorskip("dpdata")
    store = str(tmp_path / "ethanol.atd")
    command = ["data", "pack", source("ethanol_deepmd"), "-o", store]
    assert main([*command, "--targets", "{energy: {unit: kcal/mol}}"]) == 0
    packed, _ = read(store, {"energy": {}})
    reference, _ = read(source("ethanol.xyz"), KCAL)
    assert_same(packed, reference, gradients=("forces",))


def test_deepmd_needs_dpdata(monkeypatch):
    monkeypatch.setitem(sys.modules, "dpdata", None)  # import fails
    with pytest.raises(UserError, match=r"pip install 'atomtrain\[deepmd\]'"):
        read(source("bulk_deepmd"))


def test_deepmd_folder_without_element_names(tmp_path):
    pytest.importorskip("dpdata")
    folder = tmp_path / "system"
    shutil.copytree(source(os.path.join("bulk_deepmd", "Au0Cu4")), folder)
    os.remove(folder / "type_map.raw")
    with pytest.raises(UserError, match="not chemical elements.*type_map.raw"):
        read(str(folder))


def test_a_folder_without_deepmd_data(tmp_path):
    (tmp_path / "notes.txt").write_text("nothing here")
    with pytest.raises(UserError, match="not a DeePMD-kit data folder"):
        read(str(tmp_path))


def test_a_missing_database_is_not_created(tmp_path):
    path = str(tmp_path / "missing.db")
    with pytest.raises(UserError, match="does not exist"):
        read(path)
    assert not os.path.exists(path)
