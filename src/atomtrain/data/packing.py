"""``atomtrain data pack``: structure files (any source the readers know: ASE
formats, ASE databases, DeePMD-kit folders) into one packed store.

Frames are read one at a time (``sources.iter_frames``) and converted exactly as
the in-memory reader converts them (same functions: units to eV and Å, virials to
stresses, the same checks), then streamed to a :class:`PackedWriter`, so memory
stays bounded whatever the size of the input and a packed file trains to the
same structures and targets as its source files.
"""

from __future__ import annotations

import copy
import logging
from typing import Dict, List

from atomtrain.data.dataset import target_info
from atomtrain.data.info import TargetInfo
from atomtrain.data.packed import PackedWriter, StoredTarget
from atomtrain.data.readers import (
    check_distances,
    read_target,
    structure_from_atoms,
)
from atomtrain.data.sources import iter_frames
from atomtrain.data.target_keys import resolve_keys
from atomtrain.data.units import LENGTH_UNIT, conversion_factor
from atomtrain.errors import UserError
from atomtrain.options.expand import expand_dataset, files_read_by
from atomtrain.options.schema import DatasetSection
from atomtrain.options.validation import validate


logger = logging.getLogger("atomtrain")
DEFAULT_TARGETS = {"energy": {}}  # energy in eV, with forces/stress when present


def dataset_section(path: str, spec: dict) -> dict:
    """The expanded, validated dataset section of one input file; ``spec`` holds
    ``targets`` and optionally ``systems`` (its ``length_unit``), as in options."""
    systems = spec.get("systems") or {}
    if isinstance(systems, str):
        systems = {}
    systems = {**systems, "read_from": path}
    section = {"systems": systems, "targets": spec.get("targets") or DEFAULT_TARGETS}
    section = expand_dataset(section, "targets")
    section = validate(DatasetSection, section, prefix="targets").model_dump()
    for name, options in section["targets"].items():
        files = files_read_by(options)
        if files != {path}:
            raise UserError(
                f"target '{name}' of the packing spec reads from "
                f"{', '.join(sorted(files - {path}))}; when packing, every target is "
                f"read from the structure file itself ('{path}'). Remove 'read_from' "
                "from the targets, or pack each file with its targets in it."
            )
    return section


def stored_targets(section: dict) -> Dict[str, StoredTarget]:
    """The store's layout for the targets of ``section``."""
    stored = {}
    for name, options in section["targets"].items():
        info = target_info(name, options)
        stored[name] = StoredTarget(
            quantity=info.quantity,
            unit=info.unit,
            per_atom=info.per_atom,
            num_subtargets=info.num_subtargets,
            rank=info.rank,
            forces=bool(options["forces"]),
            stress=bool(options["stress"] or options["virial"]),
        )
    return stored


def _pack_file(writer: PackedWriter, source: int, section: dict) -> int:
    """Stream the frames of one file into ``writer``; returns their number."""
    systems = section["systems"]
    path = systems["read_from"]
    length_factor = conversion_factor(
        systems["length_unit"], LENGTH_UNIT, f"{path}: length_unit"
    )
    targets = section["targets"]
    infos: Dict[str, TargetInfo] = {n: target_info(n, t) for n, t in targets.items()}
    found = {name: 0 for name in targets}
    count = 0
    for index, atoms in enumerate(iter_frames(path)):
        structure = structure_from_atoms(atoms, path, index, length_factor)
        # default keys and auto gradients matched frame by frame (streaming)
        frame = [atoms]
        resolved = resolve_keys(copy.deepcopy(section), lambda _, f=frame: f, log=False)
        for name, options in resolved["targets"].items():
            read_target(
                structure, atoms, name, options, infos[name], length_factor, path, index
            )
            found[name] += name in structure.targets
        check_distances(structure, path, index)
        writer.add(structure, source, index)
        count += 1
    if count == 0:
        raise UserError(f"data file '{path}' contains no structures.")
    for name, options in targets.items():
        if found[name] == 0:
            raise UserError(
                f"no structure of '{path}' has the key '{options['key']}' (needed "
                f"for target '{name}'). Set the right 'key' for '{name}' in the "
                "packing spec (--targets)."
            )
        if found[name] < count:
            logger.info(
                f"target '{name}': {count - found[name]} of {count} "
                f"structures of '{path}' have no '{options['key']}'"
            )
    return count


def _check_explicit_gradients(sections: List[dict], stored: dict) -> None:
    """Gradients asked for by name (not ``auto``) must be found somewhere."""
    for name, options in sections[0]["targets"].items():
        for gradient, have in (
            ("forces", stored[name].n_forces),
            ("stress", stored[name].n_stress),
            ("virial", stored[name].n_stress),
        ):
            asked = options.get(gradient)
            if asked and not asked.get("auto") and have == 0:
                raise UserError(
                    f"no structure of the packed files has the key '{asked['key']}' "
                    f"(needed for {gradient} of '{name}'). Set the right key in the "
                    "packing spec (--targets), or leave it out to read it only when "
                    "present."
                )


def pack(inputs: List[str], output: str, spec: dict) -> Dict[str, StoredTarget]:
    """Write ``inputs`` with the targets of ``spec`` into the store ``output``;
    returns the stored targets with their label counts."""
    if not inputs:
        raise UserError("give at least one structure file to pack.")
    sections = [dataset_section(path, spec) for path in inputs]
    stored = stored_targets(sections[0])
    with PackedWriter(output, stored, list(inputs)) as writer:
        total = 0
        for source, section in enumerate(sections):
            total += _pack_file(writer, source, section)
            logger.info(f"packed {section['systems']['read_from']}: {total} so far")
        _check_explicit_gradients(sections, stored)
    return stored
