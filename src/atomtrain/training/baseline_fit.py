"""Fit every TargetBaseline of a model on the training structures."""

from __future__ import annotations

from typing import List

import torch

from atomtrain.data.info import DatasetInfo, TargetInfo
from atomtrain.data.structure import Structure
from atomtrain.nn.baseline import TargetBaseline


def fit_baselines(
    model: torch.nn.Module, structures: List[Structure], dataset_info: DatasetInfo
) -> dict[str, torch.Tensor]:
    """Fit composition and scale of each target; returns the scales found."""
    scales = {}
    for module in model.modules():
        if isinstance(module, TargetBaseline):
            info = dataset_info.targets[module.target_name]
            if not any(info.name in s.targets for s in structures):
                continue  # no label here (a model continued on other data): keep it
            composition, scale = fit_one(info, structures, dataset_info.atomic_types)
            module.composition.copy_(composition.to(module.composition))
            module.scale.copy_(scale.to(module.scale))
            scales[module.target_name] = scale
    return scales


def _counts(structures, atomic_types) -> torch.Tensor:
    index = {t: i for i, t in enumerate(atomic_types)}
    counts = torch.zeros(len(structures), len(atomic_types), dtype=torch.float64)
    for row, structure in enumerate(structures):
        for t, n in zip(*torch.unique(structure.types, return_counts=True)):
            counts[row, index[int(t)]] = float(n)
    return counts


def fit_one(info: TargetInfo, structures: List[Structure], atomic_types: list[int]):
    """Per-type composition values and a scale for one target."""
    name = info.name
    usable = [s for s in structures if name in s.targets]
    per_atom = info.per_atom
    n_types = len(atomic_types)
    if per_atom:
        types = torch.cat([s.types for s in usable])
        values = torch.cat([s.targets[name] for s in usable])
        composition = torch.zeros(n_types, values.shape[1], dtype=torch.float64)
        for i, t in enumerate(atomic_types):
            mask = types == t
            if mask.any():
                composition[i] = values[mask].mean(0)
        residual = (
            values - composition[torch.searchsorted(torch.tensor(atomic_types), types)]
        )
        scale = residual.std(0) if len(residual) > 1 else torch.ones(values.shape[1])
    else:
        counts = _counts(usable, atomic_types)
        values = torch.cat([s.targets[name] for s in usable])
        # ridge-regularised least squares: stable when compositions are collinear
        gram = counts.T @ counts + 1e-8 * torch.eye(n_types, dtype=torch.float64)
        composition = torch.linalg.solve(gram, counts.T @ values)
        n_atoms = counts.sum(1, keepdim=True)
        residual = (values - counts @ composition) / n_atoms
        forces = [s.forces[name] for s in usable if name in s.forces]
        if forces:
            scale = torch.cat(forces).pow(2).mean().sqrt().expand(values.shape[1])
        else:
            scale = (
                residual.std(0) if len(residual) > 1 else torch.ones(values.shape[1])
            )
    scale = torch.where(scale > 1e-12, scale, torch.ones_like(scale))
    return composition, scale.clone()
