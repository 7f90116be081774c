"""A dataset section that names a packed store: which stored targets it takes.

The store holds its targets already converted (energies in eV, lengths in Å)
with their quantity and shape, so the section's target entries only select and
rename: ``key`` names the stored target (the entry's name by default), forces
and stress are taken when the store has them (``auto``), refused when asked for
by name and absent, and left out when set to ``false``. Units or shapes that
contradict the store are refused rather than silently reinterpreted.
"""

from __future__ import annotations

import logging
from typing import Dict

from atomtrain.data.info import TargetInfo, output_name
from atomtrain.data.packed import PackedDataset, PackedStore, Selected, StoredTarget
from atomtrain.data.units import LENGTH_UNIT, conversion_factor
from atomtrain.errors import UserError, did_you_mean
from atomtrain.options.expand import files_read_by


logger = logging.getLogger("atomtrain")


def _gradient(options: dict, names, have: bool, path: str, where: str) -> bool:
    """Whether a gradient is taken: ``auto`` when present, by name only if so."""
    for name in names:
        asked = options.get(name)
        if not asked:
            continue
        if asked.get("auto"):
            return have
        if not have:
            raise UserError(
                f"{where} asks for {name}, but the packed file '{path}' has none "
                f"for this target. Remove '{name}' from the target, or pack the "
                "data again from files that have them."
            )
        return True
    return False


def _select(
    name: str, options: dict, store: PackedStore
) -> tuple[Selected, TargetInfo]:
    path = store.path
    where = f"target '{name}' of '{path}'"
    files = files_read_by(options)
    if files != {path}:
        raise UserError(
            f"{where} reads from {', '.join(sorted(files - {path}))}; the targets of "
            "a packed file come from the file itself. Remove 'read_from' from the "
            "target, or pack the other file's values into the store."
        )
    key = options["key"]
    if key not in store.targets:
        raise UserError(
            f"{where}: the packed file has no target '{key}' (it has "
            f"{', '.join(sorted(store.targets)) or 'none'}). Set 'key' to one of "
            "them." + did_you_mean(key, store.targets)
        )
    stored: StoredTarget = store.targets[key]
    if options["quantity"] not in ("", stored.quantity):
        raise UserError(
            f"{where} is declared as quantity '{options['quantity']}', but the "
            f"packed target '{key}' is '{stored.quantity or 'unspecified'}'."
        )
    if options["unit"] not in ("", stored.unit):
        raise UserError(
            f"{where} has unit '{options['unit']}', but packed data is stored "
            f"converted, in '{stored.unit or 'no unit'}'. Remove 'unit' from the "
            "target (the units were given when packing)."
        )
    if (options["per_atom"] and not stored.per_atom) or options[
        "num_subtargets"
    ] not in (1, stored.num_subtargets):
        raise UserError(
            f"{where} is declared per_atom={options['per_atom']}, num_subtargets="
            f"{options['num_subtargets']}, but the packed target '{key}' has "
            f"per_atom={stored.per_atom}, num_subtargets={stored.num_subtargets}."
        )
    forces = _gradient(
        options, ["forces"], stored.forces and stored.n_forces > 0, path, where
    )
    stress = _gradient(
        options,
        ["stress", "virial"],
        stored.stress and stored.n_stress > 0,
        path,
        where,
    )
    if stored.n_values < len(store):
        logger.info(
            f"{where}: {len(store) - stored.n_values} of {len(store)} structures "
            "have no label; they are left out of its loss and metrics"
        )
    gradients = (["positions"] if forces else []) + (["strain"] if stress else [])
    info = TargetInfo(
        name=output_name(name),
        quantity=stored.quantity,
        unit=stored.unit,
        per_atom=stored.per_atom,
        num_subtargets=stored.num_subtargets,
        gradients=gradients,
        rank=stored.rank,
    )
    return Selected(info.name, key, forces, stress), info


def open_packed(section: dict) -> tuple[PackedDataset, Dict[str, TargetInfo]]:
    """The lazy dataset of a section whose ``systems`` is a packed store, and
    its targets keyed by output name."""
    systems = section["systems"]
    path = systems["read_from"]
    store = PackedStore(path)
    factor = conversion_factor(systems["length_unit"], LENGTH_UNIT, f"{path}")
    if abs(factor - 1.0) > 1e-12:
        raise UserError(
            f"dataset '{path}' has length_unit '{systems['length_unit']}', but "
            "packed data is stored in Å (converted when packing). Remove "
            "'length_unit' from its systems section."
        )
    selected, infos = [], {}
    for name, options in section["targets"].items():
        choice, info = _select(name, options, store)
        selected.append(choice)
        infos[info.name] = info
    return PackedDataset(store, selected), infos
