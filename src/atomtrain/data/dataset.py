"""Datasets from options: targets, reading, random splits and DatasetInfo.

A dataset is a list of in-memory structures, or a lazy sequence over a packed
store (``.atd``) that is never loaded whole: splits of it are index subsets.
"""

from __future__ import annotations

import copy
from typing import List

import torch

from atomtrain.data.info import DatasetInfo, TargetInfo, output_name
from atomtrain.data.readers import (
    cached_frames,
    read_structures,
    resolve_auto_gradients,
)
from atomtrain.data.sequences import Dataset, atomic_types_of, subset
from atomtrain.errors import UserError


def _as_list(section) -> list:
    return section if isinstance(section, list) else [section]


def target_info(name: str, options: dict) -> TargetInfo:
    gradients = []
    if options.get("forces"):
        gradients.append("positions")
    if options.get("stress") or options.get("virial"):
        gradients.append("strain")
    unit = options["unit"] if options["quantity"] != "energy" else "eV"
    kind = options.get("type", "scalar")
    rank = kind["cartesian"]["rank"] if "cartesian" in kind else 0
    irreps = [
        (irrep["o3_lambda"], irrep["o3_sigma"])
        for irrep in (kind["spherical"]["irreps"] if "spherical" in kind else [])
    ]
    if (rank or irreps) and (gradients or options["quantity"] == "energy"):
        what = "Cartesian" if rank else "spherical"
        raise UserError(
            f"target '{name}' is a {what} tensor (type: {kind}) with quantity "
            f"'{options['quantity']}' and gradients {gradients or 'none'}: "
            f"{what} targets cannot be energies and have no forces or stress. Give "
            "it another quantity (e.g. polarizability) and remove "
            "forces/stress/virial, or make it a scalar target."
        )
    return TargetInfo(
        name=output_name(name),
        quantity=options["quantity"],
        unit=unit,
        per_atom=options["per_atom"],
        num_subtargets=options["num_subtargets"],
        gradients=gradients,
        rank=rank,
        irreps=irreps,
    )


def read_dataset(section: dict, cache: dict) -> tuple[Dataset, dict]:
    """Structures of one dataset section, targets renamed to their output names
    (a lazy dataset when the section names a packed store)."""
    from atomtrain.data.packed import is_packed

    if is_packed(section["systems"]["read_from"]):
        from atomtrain.data.packed_section import open_packed

        return open_packed(section)
    section = resolve_auto_gradients(
        copy.deepcopy(section), lambda path: cached_frames(cache, path)
    )
    infos = {name: target_info(name, t) for name, t in section["targets"].items()}
    structures = read_structures(section, infos)
    renamed = {}
    for structure in structures:
        for field in ("targets", "forces", "stress"):
            values = getattr(structure, field)
            setattr(structure, field, {output_name(k): v for k, v in values.items()})
    for info in infos.values():
        renamed[info.name] = info
    return structures, renamed


def _merge_targets(into: dict, new: dict, where: str) -> None:
    for name, info in new.items():
        if name in into and (
            into[name].per_atom,
            into[name].num_subtargets,
            into[name].unit,
            into[name].rank,
            into[name].irreps,
        ) != (info.per_atom, info.num_subtargets, info.unit, info.rank, info.irreps):
            raise UserError(
                f"target '{name}' of {where} is declared differently from the "
                "training set (per_atom, num_subtargets, unit or type differ)."
            )
        if name in into:
            into[name].gradients = sorted(
                set(into[name].gradients) | set(info.gradients)
            )
        else:
            into[name] = info


def split(structures: Dataset, fraction: float, generator, what: str):
    """Take ``fraction`` of ``structures`` at random (at least one structure)."""
    n_take = int(round(fraction * len(structures)))
    if fraction > 0 and n_take == 0:
        n_take = 1
    if n_take >= len(structures):
        raise UserError(
            f"{what} = {fraction} of {len(structures)} training structures leaves no "
            "structure to train on. Use a smaller fraction or more data."
        )
    order = torch.randperm(len(structures), generator=generator).tolist()
    return subset(structures, order[n_take:]), subset(structures, order[:n_take])


def load_datasets(options: dict):
    """Read training, validation and test sets; returns (train, val, test, info)
    as lists of datasets (one per file section) and the DatasetInfo."""
    cache: dict = {}
    targets: dict[str, TargetInfo] = {}
    train = []
    for section in _as_list(options["training_set"]):
        structures, infos = read_dataset(section, cache)
        _merge_targets(targets, infos, "training_set")
        train.append(structures)
    generator = torch.Generator().manual_seed(options["seed"])
    splits = {}
    for name in ("validation_set", "test_set"):
        value = options[name]
        if isinstance(value, float):
            taken = []
            for i, dataset in enumerate(train):
                train[i], part = (
                    split(dataset, value, generator, name)
                    if value > 0
                    else (dataset, [])
                )
                taken.append(part)
            splits[name] = _joined(taken)
        else:
            splits[name] = []
            for section in _as_list(value):
                structures, infos = read_dataset(section, cache)
                _merge_targets(targets, infos, name)
                splits[name].append(structures)
    types = sorted({t for dataset in train for t in atomic_types_of(dataset)})
    info = DatasetInfo(atomic_types=types, targets=targets)
    return train, splits["validation_set"], splits["test_set"], info


def _joined(parts: List[Dataset]) -> List[Dataset]:
    """The parts taken from each training dataset: one list when all are lists
    (as before), else the non-empty parts side by side."""
    if all(isinstance(p, list) for p in parts):
        return [[s for part in parts for s in part]]
    return [p for p in parts if len(p)]
