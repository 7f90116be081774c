"""Weighted per-target losses on normalised errors.

Errors are divided by the target's scale (from the composition baseline fit) so
that weights of 1 balance energies, forces and stresses: energies are compared
per atom, stresses as virial per atom (stress x volume / atoms).
"""

from __future__ import annotations

from typing import Dict

import torch
import torch.nn.functional as F

from atomtrain.data.info import TargetInfo
from atomtrain.training.evaluate import Batch


def _term(error: torch.Tensor, options: dict) -> torch.Tensor:
    kind = options.get("type", "mse")
    zero = torch.zeros_like(error)
    if kind == "mae":
        return F.l1_loss(error, zero)
    if kind == "huber":
        return F.huber_loss(error, zero, delta=options.get("delta", 1.0))
    return F.mse_loss(error, zero)


def normalised_errors(
    predictions: Batch,
    references: Batch,
    targets: Dict[str, TargetInfo],
    n_atoms: torch.Tensor,
    volume_per_atom: torch.Tensor | None = None,
) -> Dict[str, Dict[str, torch.Tensor]]:
    """Errors per target and kind ('values', 'forces', 'stress') in the data's
    units, energies per atom, for the labelled rows only. ``_virial`` (stress
    times volume per atom) is what the loss uses for stresses."""
    errors: Dict[str, Dict[str, torch.Tensor]] = {}
    for name, info in targets.items():
        kinds: Dict[str, torch.Tensor] = {}
        for kind in ("values", "forces", "stress"):
            predicted = getattr(predictions, kind).get(name)
            reference = getattr(references, kind).get(name)
            if predicted is None or reference is None:
                continue
            rows = references.rows[(name, kind)]
            error = predicted[rows] - reference
            if kind == "values" and info.is_energy and not info.per_atom:
                error = error / n_atoms[rows].unsqueeze(1)
            kinds[kind] = error
            if kind == "stress" and volume_per_atom is not None:
                kinds["_virial"] = error * volume_per_atom[rows].view(-1, 1, 1)
        if kinds:
            errors[name] = kinds
    return errors


def total_loss(
    errors: Dict[str, Dict[str, torch.Tensor]],
    loss_options: Dict[str, dict],
    scales: Dict[str, torch.Tensor],
) -> torch.Tensor:
    """Sum of weighted loss terms of every target and gradient; stress errors
    enter as virial per atom so that they share the energy's scale."""
    total = None
    for name, kinds in errors.items():
        options = loss_options.get(name, {})
        scale = scales[name]
        for kind, error in kinds.items():
            if kind == "stress":
                continue  # enters as _virial, on the energy's per-atom scale
            kind = "stress" if kind == "_virial" else kind
            term_options = options if kind == "values" else options.get(kind, {})
            weight = term_options.get("weight", 1.0)
            if weight == 0.0:
                continue
            if kind == "values" and error.shape[-1] != scale.shape[0]:
                # Cartesian components flattened before properties
                scale_of = scale.repeat(error.shape[-1] // scale.shape[0])
            else:
                scale_of = scale if kind == "values" else scale.mean()
            normalised = error / scale_of
            term = weight * _term(normalised, term_options)
            total = term if total is None else total + term
    if total is None:  # no label in this batch has a non-zero weight
        return torch.zeros((), requires_grad=True)
    return total
