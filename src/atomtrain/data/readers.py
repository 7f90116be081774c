"""Read structures and their targets from any source of frames (files ASE
reads, ASE databases, DeePMD-kit folders: see ``sources``).

Every value is looked up in ``atoms.info``, ``atoms.arrays`` and the calculator
results, in that order (``target_keys.lookup``).
"""

from __future__ import annotations

import numpy as np
import torch

from atomtrain.data.info import TargetInfo
from atomtrain.data.sources import read_frames
from atomtrain.data.structure import Structure
from atomtrain.data.target_keys import available_keys, lookup, resolve_keys
from atomtrain.data.units import ENERGY_UNIT, LENGTH_UNIT, conversion_factor
from atomtrain.errors import UserError


def read_atoms(path: str):
    """All frames of ``path`` (a file, ASE database or DeePMD-kit folder) as ASE
    Atoms, or a clear error."""
    return read_frames(path)


def cached_frames(cache: dict, path: str):
    if path not in cache:
        cache[path] = read_atoms(path)
    return cache[path]


_lookup = lookup  # the name other modules import
_available_keys = available_keys


def _get(atoms, key: str, path: str, index: int, what: str) -> np.ndarray:
    value = _lookup(atoms, key)
    if value is None:
        raise UserError(
            f"structure {index} of '{path}' has no key '{key}' (needed for {what}). "
            f"Keys present in this structure: {', '.join(_available_keys(atoms))}. "
            f"Set the right 'key' for {what} in your options."
        )
    try:
        array = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise UserError(
            f"structure {index} of '{path}': key '{key}' ({what}) holds "
            f"'{value}', which is not a number or an array of numbers."
        ) from None
    if not np.all(np.isfinite(array)):
        raise UserError(
            f"structure {index} of '{path}': key '{key}' ({what}) contains NaN or "
            "infinite values. Remove or fix this structure."
        )
    return array


def _check_shape(array, shape, path, index, key, what):
    try:
        return array.reshape(shape)
    except ValueError:
        raise UserError(
            f"structure {index} of '{path}': key '{key}' ({what}) has "
            f"{array.size} values, expected shape {shape}."
        ) from None


def resolve_auto_gradients(dataset_options: dict, frames_of) -> dict:
    """Default keys matched to the file (MACE's ``REF_`` names) and gradients
    marked ``auto`` read when any structure has them (see ``target_keys``)."""
    return resolve_keys(dataset_options, frames_of)


def read_structures(
    dataset_options: dict, targets: dict[str, TargetInfo]
) -> list[Structure]:
    """Read the structures and targets of one dataset section (expanded form,
    with ``auto`` gradients resolved)."""
    systems = dataset_options["systems"]
    path = systems["read_from"]
    length_factor = conversion_factor(
        systems["length_unit"], LENGTH_UNIT, f"{path}: length_unit"
    )
    frames = read_atoms(path)
    per_file = {path: frames}  # frames of the files named by targets' read_from
    structures = []
    for index, atoms in enumerate(frames):
        structure = structure_from_atoms(atoms, path, index, length_factor)
        for name, options in dataset_options["targets"].items():
            target_path = options["read_from"]
            if target_path == path:
                target_atoms = atoms
            else:
                other = cached_frames(per_file, target_path)
                if len(other) != len(frames):
                    raise UserError(
                        f"target '{name}' reads from '{target_path}' which has "
                        f"{len(other)} structures, but '{path}' has {len(frames)}."
                    )
                target_atoms = other[index]
            read_target(
                structure,
                target_atoms,
                name,
                options,
                targets[name],
                length_factor,
                target_path,
                index,
            )
        check_distances(structure, path, index)
        structures.append(structure)
    for name, options in dataset_options["targets"].items():
        _check_coverage(structures, frames, name, options, path)
    return structures


def structure_from_atoms(atoms, path: str, index: int, length_factor: float):
    """The structure (no targets yet) of frame ``index`` of ``path``, in Å."""
    if len(atoms) == 0:
        raise UserError(
            f"structure {index} of '{path}' has no atoms. Remove it from the file."
        )
    positions = np.asarray(atoms.positions, dtype=np.float64) * length_factor
    if not np.all(np.isfinite(positions)):
        raise UserError(f"structure {index} of '{path}' has NaN or infinite positions.")
    cell = np.asarray(atoms.cell.array, dtype=np.float64) * length_factor
    pbc = np.asarray(atoms.pbc, dtype=bool)
    if pbc.any() and abs(np.linalg.det(cell[pbc][:, pbc])) < 1e-6:
        raise UserError(
            f"structure {index} of '{path}' is periodic but its cell has zero "
            "volume. Give a cell, or set pbc to False for molecules."
        )
    return Structure(
        types=torch.tensor(atoms.numbers, dtype=torch.long),
        positions=torch.tensor(positions),
        cell=torch.tensor(cell),
        pbc=torch.tensor(pbc),
        source=f"{path}:{index}",
    )


MIN_DISTANCE = 0.1  # Å: closer atoms are duplicates or broken data
DIRECT_CHECK_ATOMS = 500  # molecules up to this size are checked pair by pair


def check_distances(structure: Structure, path: str, index: int) -> None:
    """Refuse atoms closer than MIN_DISTANCE (duplicates, or a wrong unit)."""
    positions = structure.positions.numpy()
    if not structure.pbc.any() and len(positions) <= DIRECT_CHECK_ATOMS:
        # all pairs directly: a cell list with a 0.1 Å cutoff over a molecule's
        # bounding box is thousands of times slower for small molecules
        i, j = np.triu_indices(len(positions), k=1)
        distances = np.linalg.norm(positions[j] - positions[i], axis=1)
        close = np.flatnonzero(distances < MIN_DISTANCE)
        pairs = np.stack([i[close], j[close]], axis=1)
        distances = distances[close]
    else:
        import vesin

        # a 1 Å cutoff, filtered: cells of 0.1 Å make the cell list ~100x slower
        calculator = vesin.NeighborList(cutoff=1.0, full_list=False)
        pairs, distances = calculator.compute(
            points=positions,
            box=structure.cell.numpy(),
            periodic=structure.pbc.numpy(),
            quantities="Pd",
        )
        close = distances < MIN_DISTANCE
        pairs, distances = pairs[close], distances[close]
    if len(pairs):
        i, j = (int(x) for x in pairs[0])
        raise UserError(
            f"structure {index} of '{path}': atoms {i} and {j} are "
            f"{float(distances[0]):.3g} Å apart (less than {MIN_DISTANCE} Å). "
            "Remove duplicated atoms, or check the length unit of this file."
        )


def _check_coverage(structures, frames, name, options, path) -> None:
    """A label missing everywhere is a mistake (a wrong key); missing in some
    structures is allowed, and reported."""
    import logging

    checks = [("targets", options["key"], f"target '{name}'")]
    for gradient, field_name in (("forces", "forces"), ("stress", "stress"),
                                 ("virial", "stress")):  # fmt: skip
        if options.get(gradient):
            checks.append(
                (field_name, options[gradient]["key"], f"{gradient} of '{name}'")
            )
    for field_name, key, what in checks:
        have = sum(name in getattr(s, field_name) for s in structures)
        if have == 0:
            raise UserError(
                f"no structure of '{path}' has the key '{key}' (needed for {what}). "
                f"Keys present in structure 0: {', '.join(_available_keys(frames[0]))}."
                f" Set the right 'key' for {what} in your options."
            )
        if have < len(structures):
            logging.getLogger("atomtrain").info(
                f"{what}: {len(structures) - have} of {len(structures)} structures "
                f"of '{path}' have no '{key}'; they are left out of its loss and "
                "metrics"
            )


def read_target(structure, atoms, name, options, info, length_factor, path, index):
    """Read the labels of one target; a label whose key a structure lacks is
    left out (a missing label, masked from loss and metrics)."""
    n_atoms = len(structure)
    where = f"target '{name}' in {path}"
    if info.is_energy:
        factor = conversion_factor(options["unit"], ENERGY_UNIT, f"{where}: unit")
    else:
        factor = 1.0  # non-energy targets keep the unit the user declared
    if _lookup(atoms, options["key"]) is not None:
        value = _get(atoms, options["key"], path, index, f"target '{name}'") * factor
        shape = (n_atoms if info.per_atom else 1, info.width)
        structure.targets[name] = torch.tensor(
            _check_shape(value, shape, path, index, options["key"], f"target '{name}'")
        )
    forces = options.get("forces")
    if forces and _lookup(atoms, forces["key"]) is not None:
        array = _get(atoms, forces["key"], path, index, f"forces of '{name}'")
        array = _check_shape(
            array, (n_atoms, 3), path, index, forces["key"], f"forces of '{name}'"
        )
        structure.forces[name] = torch.tensor(array * factor / length_factor)
    stress = options.get("stress")
    virial = options.get("virial")
    for gradient, gradient_options in (("stress", stress), ("virial", virial)):
        if gradient_options and _lookup(atoms, gradient_options["key"]) is not None:
            _check_periodic(structure, path, index, name, gradient, gradient_options)
    if stress and _lookup(atoms, stress["key"]) is not None:
        array = _get(atoms, stress["key"], path, index, f"stress of '{name}'")
        array = _voigt_to_matrix(array, path, index, stress["key"])
        structure.stress[name] = torch.tensor(array * factor / length_factor**3)
    elif virial and _lookup(atoms, virial["key"]) is not None:
        array = _get(atoms, virial["key"], path, index, f"virial of '{name}'")
        array = _voigt_to_matrix(array, path, index, virial["key"])
        volume = abs(float(torch.det(structure.cell)))
        if volume < 1e-6:
            raise UserError(
                f"structure {index} of '{path}' has a virial but no cell: a virial "
                "needs a periodic cell to be turned into a stress."
            )
        # stress = -virial / volume (ASE sign convention)
        structure.stress[name] = torch.tensor(-array * factor / volume)


def _check_periodic(structure, path, index, name, gradient, options) -> None:
    """Only a structure periodic in every direction has a stress (or virial):
    it is the derivative of the energy with respect to a strain of its cell,
    divided by the cell's volume."""
    if bool(structure.pbc.all()):
        return
    pbc = " ".join("T" if p else "F" for p in structure.pbc.tolist())
    raise UserError(
        f"structure {index} of '{path}' has a {gradient} (key '{options['key']}') "
        f'but is not periodic in every direction (pbc="{pbc}"): only periodic '
        "structures can have a stress or virial. Remove the key from the "
        f"non-periodic structures, or set '{gradient}: false' for target '{name}' "
        "in your options."
    )


def _voigt_to_matrix(array, path, index, key):
    if array.size == 6:
        xx, yy, zz, yz, xz, xy = array.ravel()
        return np.array([[xx, xy, xz], [xy, yy, yz], [xz, yz, zz]])
    return _check_shape(array, (3, 3), path, index, key, "stress/virial")
