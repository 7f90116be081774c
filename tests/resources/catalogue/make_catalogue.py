"""Write the file catalogue: the same few structures in each format the readers
accept, written by the tools of each format (ASE, ase.db, dpdata).

Run from the repository root (needs dpdata: pip install 'atomtrain[deepmd]'):

    python tests/resources/catalogue/make_catalogue.py

Two sets of structures:

- ``bulk``: 5 periodic frames, 3 of fcc Cu (4 atoms) and 2 of L1_2 AuCu3, each
  strained and rattled, labelled by ASE's EMT calculator (energy in eV, forces,
  stress in eV/Å^3; positions, cells and forces rounded to the 8 decimals that
  extended XYZ keeps, so that every format holds the same numbers);
- ``ethanol``: the first 3 molecules of ``ethanol_reduced_100.xyz`` (energies
  in kcal/mol), given the placeholder box ``Lattice="50 0 0 0 50 0 0 0 50"``
  with ``pbc="F F F"`` as public molecule files do.

The bulk frames are also written in DeePMD-kit's mixed-type layout
(``bulk_deepmd_mixed``, one folder for both compositions).

Frames are ordered as the DeePMD-kit folders list them (systems by folder
name, atoms by type within a structure), so every file holds the same frames
in the same order. The virial written where a format has one is DeePMD's (and
MACE's) convention, virial = -volume x stress.
"""

from __future__ import annotations

import os
import shutil

import ase.db
import ase.io
import dpdata
import numpy as np
from ase.build import bulk
from ase.calculators.emt import EMT
from ase.calculators.singlepoint import SinglePointCalculator


HERE = os.path.dirname(os.path.abspath(__file__))
ETHANOL = os.path.join(os.path.dirname(HERE), "ethanol_reduced_100.xyz")
DECIMALS = 8  # what ASE's extended XYZ writer keeps of positions and forces


def _round_as_extxyz(atoms) -> None:
    """Positions and cell to the 8 decimals extended XYZ writes, so that every
    format holds the very same numbers (forces are rounded likewise)."""
    atoms.positions = np.round(atoms.positions, DECIMALS)
    atoms.cell = np.round(atoms.cell.array, DECIMALS)


def _strained(atoms, seed: int):
    rng = np.random.default_rng(seed)
    strain = np.eye(3) + 0.02 * rng.standard_normal((3, 3))
    atoms.set_cell(atoms.cell.array @ strain, scale_atoms=True)
    atoms.rattle(0.05, seed=seed)
    return atoms


def bulk_frames() -> list:
    """Labelled periodic frames, Cu4 first (the DeePMD folders' name order:
    Au0Cu4 before Au1Cu3)."""
    frames = []
    for seed in range(3):
        frames.append(_strained(bulk("Cu", "fcc", a=3.61, cubic=True), seed))
    for seed in range(2):
        atoms = bulk("Cu", "fcc", a=3.7, cubic=True)
        atoms.symbols[0] = "Au"  # L1_2: Au at the corner, Cu on the faces
        frames.append(_strained(atoms, 10 + seed))
    labelled = []
    for atoms in frames:
        _round_as_extxyz(atoms)
        atoms.calc = EMT()
        results = {
            "energy": atoms.get_potential_energy(),
            "forces": np.round(atoms.get_forces(), DECIMALS),
            "stress": atoms.get_stress(),
        }
        atoms.calc = SinglePointCalculator(atoms, **results)
        labelled.append(atoms)
    return labelled


def ethanol_frames() -> list:
    frames = ase.io.read(ETHANOL, ":3")
    for atoms in frames:
        results = dict(atoms.calc.results)  # energy and forces, read by ASE
        results["forces"] = np.round(results["forces"], DECIMALS)
        atoms.cell = 50.0 * np.eye(3)
        atoms.pbc = False
        _round_as_extxyz(atoms)
        atoms.calc = SinglePointCalculator(atoms, **results)  # for the new cell
    return frames


def _write_deepmd(frames: list, name: str, type_map: list, mixed=False) -> None:
    systems = dpdata.MultiSystems(type_map=type_map)
    for atoms in frames:
        systems.append(dpdata.LabeledSystem(atoms, fmt="ase/structure"))
    formats = [("deepmd/npy", "deepmd"), ("deepmd/raw", "deepmd_raw")]
    if mixed:
        formats.append(("deepmd/npy/mixed", "deepmd_mixed"))
    for fmt, suffix in formats:
        folder = os.path.join(HERE, f"{name}_{suffix}")
        shutil.rmtree(folder, ignore_errors=True)
        systems.to(fmt, folder)


def _mace_style(atoms, gradient: str):
    """The frame with MACE's REF_ keys instead of a calculator's results."""
    copy = atoms.copy()
    copy.calc = None
    copy.info["REF_energy"] = atoms.get_potential_energy()
    copy.arrays["REF_forces"] = atoms.get_forces()
    stress = atoms.get_stress(voigt=False)
    if gradient == "stress":
        copy.info["REF_stress"] = stress
    else:
        copy.info["REF_virial"] = -atoms.get_volume() * stress
    return copy


def write_bulk() -> None:
    frames = bulk_frames()
    ase.io.write(os.path.join(HERE, "bulk.xyz"), frames, format="extxyz")
    for gradient in ("stress", "virial"):
        ase.io.write(
            os.path.join(HERE, f"bulk_mace_{gradient}.xyz"),
            [_mace_style(atoms, gradient) for atoms in frames],
            format="extxyz",
        )
    path = os.path.join(HERE, "bulk.db")
    if os.path.exists(path):
        os.remove(path)
    with ase.db.connect(path) as database:
        for atoms in frames:
            database.write(atoms)  # labels as the calculator's results
    path = os.path.join(HERE, "bulk_kvp.db")
    if os.path.exists(path):
        os.remove(path)
    with ase.db.connect(path) as database:
        for atoms in frames:
            bare = atoms.copy()
            bare.calc = None
            database.write(
                bare,
                key_value_pairs={"REF_energy": atoms.get_potential_energy()},
                data={
                    "REF_forces": atoms.get_forces(),
                    "REF_virial": -atoms.get_volume() * atoms.get_stress(voigt=False),
                },
            )
    _write_deepmd(frames, "bulk", ["Au", "Cu"], mixed=True)


def write_ethanol() -> None:
    frames = ethanol_frames()
    ase.io.write(os.path.join(HERE, "ethanol.xyz"), frames, format="extxyz")
    path = os.path.join(HERE, "ethanol.db")
    if os.path.exists(path):
        os.remove(path)
    with ase.db.connect(path) as database:
        for atoms in frames:
            database.write(atoms)  # ASE read the labels as calculator results
    _write_deepmd(frames, "ethanol", ["H", "C", "O"])


if __name__ == "__main__":
    write_bulk()
    write_ethanol()
