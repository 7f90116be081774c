"""DeePMD-kit training folders, read through dpdata (the field's own reader).

A system folder holds ``type.raw`` (one type index per atom), ``type_map.raw``
(the element of each index) and either ``set.*/{coord,box,energy,force,
virial}.npy`` (``deepmd/npy``) or ``coord.raw``, ``box.raw``, ... (``deepmd/raw``);
a ``nopbc`` file marks a non-periodic system. A folder of such folders (what
``dpdata.MultiSystems`` writes) is read system by system, in name order. In
the mixed-type layout (``set.*/real_atom_types.npy``: frames of one size, any
composition) dpdata groups the frames by composition; they are read in the
order of the formulas.

Each frame becomes ASE ``Atoms`` with the energy and forces as calculator
results (keys ``energy`` and ``forces``) and DeePMD's virial under the key
``virial``, so the usual target options apply; the virial is turned into a
stress by the common reader (stress = -virial / volume, DeePMD's and ASE's
sign conventions).
"""

from __future__ import annotations

import glob
import os
from typing import Iterator, List

import numpy as np

from atomtrain.errors import UserError


EXTRA = "deepmd"  # the atomtrain extra that installs dpdata


def is_system(path: str) -> bool:
    return os.path.isfile(os.path.join(path, "type.raw"))


def is_deepmd_folder(path: str) -> bool:
    """A DeePMD system folder, or a folder with system folders below it."""
    return os.path.isdir(path) and bool(system_folders(path))


def system_folders(path: str) -> List[str]:
    """The system folders at or below ``path``, sorted by path."""
    if is_system(path):
        return [path]
    found = []
    for root, dirs, _ in os.walk(path):
        dirs.sort()
        if is_system(root):
            found.append(root)
            dirs[:] = []  # a system's set.* folders hold no systems
    return sorted(found)


def _dpdata():
    try:
        import dpdata
    except ImportError:
        raise UserError(
            "reading DeePMD-kit folders needs the dpdata package, which is not "
            f"installed. Install it with: pip install 'atomtrain[{EXTRA}]' (or "
            "pip install dpdata)."
        ) from None
    return dpdata


def _load(folder: str):
    """dpdata's (Labeled)System of one folder: labelled when it has energies."""
    dpdata = _dpdata()
    npy = bool(glob.glob(os.path.join(folder, "set.*")))
    fmt = "deepmd/npy" if npy else "deepmd/raw"
    energies = glob.glob(os.path.join(folder, "set.*", "energy.npy")) + glob.glob(
        os.path.join(folder, "energy.raw")
    )
    kind = dpdata.LabeledSystem if energies else dpdata.System
    try:
        return kind(folder, fmt=fmt)
    except Exception as error:  # dpdata raises many kinds of errors for bad data
        raise UserError(
            f"could not read the DeePMD-kit folder '{folder}' with dpdata "
            f"({fmt}): {type(error).__name__}: {error}. A system folder needs "
            "type.raw, type_map.raw and set.*/coord.npy and box.npy (or coord.raw "
            "and box.raw)."
        ) from None


def _symbols(data: dict, folder: str) -> List[str]:
    from ase.data import atomic_numbers

    names = list(data["atom_names"])
    unknown = [name for name in names if name not in atomic_numbers]
    if unknown:
        has_map = os.path.isfile(os.path.join(folder, "type_map.raw"))
        raise UserError(
            f"DeePMD-kit folder '{folder}': atom types {', '.join(unknown)} are not "
            "chemical elements. "
            + (
                "Write the element of each type in type_map.raw (one symbol per "
                "line, such as O and H), in the order of the indices of type.raw."
                if not has_map
                else "Edit type_map.raw to give element symbols (such as O, H)."
            )
        )
    return [names[t] for t in data["atom_types"]]


def _is_mixed(folder: str) -> bool:
    """DeePMD-kit's mixed-type layout: frames of one size but any composition,
    with per-frame types in ``set.*/real_atom_types.npy``."""
    return bool(glob.glob(os.path.join(folder, "set.*", "real_atom_types.npy")))


def _load_mixed(folder: str) -> list:
    """One dpdata System per composition of a mixed-type folder, by formula."""
    dpdata = _dpdata()
    labeled = bool(glob.glob(os.path.join(folder, "set.*", "energy.npy")))
    try:
        systems = dpdata.MultiSystems().load_systems_from_file(
            folder, fmt="deepmd/npy/mixed", labeled=labeled
        )
    except Exception as error:  # dpdata raises many kinds of errors for bad data
        raise UserError(
            f"could not read the DeePMD-kit mixed-type folder '{folder}' with "
            f"dpdata: {type(error).__name__}: {error}."
        ) from None
    return [systems.systems[formula] for formula in sorted(systems.systems)]


def _frames(folder: str) -> Iterator:
    if _is_mixed(folder):
        for system in _load_mixed(folder):
            yield from _frames_of(system.data, folder)
    else:
        yield from _frames_of(_load(folder).data, folder)


def _frames_of(data: dict, folder: str) -> Iterator:
    from ase import Atoms
    from ase.calculators.singlepoint import SinglePointCalculator

    symbols = _symbols(data, folder)
    periodic = not data.get("nopbc", False)
    for frame in range(len(data["coords"])):
        atoms = Atoms(
            symbols=symbols,
            positions=data["coords"][frame],
            cell=data["cells"][frame],
            pbc=periodic,
        )
        results = {}
        if "energies" in data:
            results["energy"] = float(np.asarray(data["energies"][frame]).ravel()[0])
        if "forces" in data:
            results["forces"] = np.asarray(data["forces"][frame])
        if results:
            atoms.calc = SinglePointCalculator(atoms, **results)
        if "virials" in data:
            atoms.info["virial"] = np.asarray(data["virials"][frame])
        yield atoms


def iter_deepmd(path: str) -> Iterator:
    """Frames of every system folder at or below ``path``, as ASE Atoms."""
    for folder in system_folders(path):
        yield from _frames(folder)
