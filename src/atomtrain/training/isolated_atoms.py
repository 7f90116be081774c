"""Isolated-atom energies as the composition baseline of an energy target.

A file of single-atom structures (one per element) gives each element's energy
at the level of theory of the training set; the network then learns the
binding energy, whatever the composition of the training structures, instead
of a least-squares fit that a small or uniform training set makes arbitrary.
"""

from __future__ import annotations

import os

import numpy as np
import torch

from atomtrain.data.info import DatasetInfo, output_name
from atomtrain.data.readers import _lookup
from atomtrain.data.units import ENERGY_UNIT, conversion_factor
from atomtrain.errors import UserError
from atomtrain.training.logs import logger


OPTION = "architecture.training.isolated_atoms"


def _section_of(options: dict, name: str) -> dict | None:
    """The target's section in the first training-set section declaring it."""
    sections = options["training_set"]
    for section in sections if isinstance(sections, list) else [sections]:
        if name in section["targets"]:
            return section["targets"][name]
    return None


def isolated_atom_energies(
    options: dict, dataset_info: DatasetInfo
) -> dict[str, dict[int, torch.Tensor]]:
    """{target output name: {atomic number: energy in eV}} for every target of
    ``isolated_atoms`` in the (expanded) options, checked against the atomic
    types of the training set."""
    energies = {}
    for name, path in options["architecture"]["training"]["isolated_atoms"].items():
        where = f"{OPTION}.{name} ('{path}')"
        section = _section_of(options, name)
        info = dataset_info.targets.get(output_name(name))
        if section is None or info is None:
            raise UserError(
                f"{where}: '{name}' is not a target of the training set (its "
                f"targets: {', '.join(_names(options))}). Name the energy target "
                "whose baseline the isolated atoms give."
            )
        if not info.is_energy or info.per_atom or info.rank:
            raise UserError(
                f"{where}: target '{name}' is not a per-structure energy (its "
                f"quantity is '{info.quantity}'"
                f"{', per atom' if info.per_atom else ''}); isolated-atom "
                "energies are the baseline of energy targets only."
            )
        values = _read(path, section, where, info.num_subtargets)
        missing = sorted(set(dataset_info.atomic_types) - set(values))
        if missing:
            raise UserError(
                f"{where}: the training set has the elements "
                f"{', '.join(_symbol(z) for z in missing)}, which have no "
                f"structure in this file (it has "
                f"{', '.join(_symbol(z) for z in sorted(values))}). Add one "
                "single-atom structure for each of them."
            )
        energies[info.name] = values
        listed = ", ".join(f"{_symbol(z)} {float(v[0]):.6f}" for z, v in values.items())
        logger.info(f"composition baseline of '{name}' from {path}: {listed} eV")
    return energies


def _read(path: str, section: dict, where: str, width: int) -> dict[int, torch.Tensor]:
    import ase.io

    if not os.path.exists(path):
        raise UserError(
            f"{where}: the file does not exist (looked in "
            f"{os.path.abspath(path)}; relative paths are resolved from the "
            "directory you run atomtrain in)."
        )
    try:
        frames = ase.io.read(path, ":")
    except Exception as error:  # ASE raises many kinds of errors for bad files
        raise UserError(
            f"{where}: could not read the file with ASE: "
            f"{type(error).__name__}: {error}."
        ) from None
    key = section["key"]
    factor = conversion_factor(section["unit"], ENERGY_UNIT, f"{where}: unit")
    values: dict[int, torch.Tensor] = {}
    for index, atoms in enumerate(frames):
        if len(atoms) != 1:
            raise UserError(
                f"{where}: structure {index} has {len(atoms)} atoms; every "
                "structure of an isolated-atoms file must be a single atom."
            )
        number = int(atoms.numbers[0])
        if number in values:
            raise UserError(
                f"{where}: structures of {_symbol(number)} appear more than once; "
                "give one structure per element."
            )
        value = _lookup(atoms, key)
        try:
            array = np.asarray(value, dtype=np.float64).reshape(width)
        except (TypeError, ValueError):
            array = None
        if array is None or not np.all(np.isfinite(array)):
            found = "nothing" if value is None else repr(value)
            raise UserError(
                f"{where}: structure {index} ({_symbol(number)}) has no finite "
                f"energy under the key '{key}' (the target's key in the training "
                f"set); found {found}."
            )
        values[number] = torch.from_numpy(array * factor)
    return values


def _names(options: dict) -> list[str]:
    sections = options["training_set"]
    sections = sections if isinstance(sections, list) else [sections]
    return sorted({name for section in sections for name in section["targets"]})


def _symbol(number: int) -> str:
    from ase.data import chemical_symbols

    return chemical_symbols[number]
