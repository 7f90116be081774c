"""Run a model on a batch of structures and collect predictions with gradients.

Used by training (in-memory model) and by ``atomtrain eval`` (exported model), so
both compute forces and stresses the same way: forces are minus the gradient of
the energy with respect to positions, the stress is the derivative with respect to
a strain of the cell divided by the volume.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Dict, List

import torch
from metatensor.torch import TensorMap
from metatomic.torch import ModelOutput, NeighborListOptions

from atomtrain.data.info import TargetInfo
from atomtrain.data.structure import Structure
from atomtrain.data.systems import make_system
from atomtrain.nn.outputs import flat_rows


ModelCall = Callable[[list, Dict[str, ModelOutput]], Dict[str, TensorMap]]


@dataclass
class Batch:
    """Predictions or references for a batch, one flat tensor per quantity."""

    values: Dict[str, torch.Tensor] = field(default_factory=dict)
    forces: Dict[str, torch.Tensor] = field(default_factory=dict)
    stress: Dict[str, torch.Tensor] = field(default_factory=dict)
    # for references: which prediction rows each reference row belongs to, per
    # (target, kind); structures without a label are left out (missing labels)
    rows: Dict[tuple, torch.Tensor] = field(default_factory=dict)


def _labelled(structures, name, field_name, per_atom, device):
    """Reference rows of structures that have the label, and their row indices."""
    values, rows, offset = [], [], 0
    for i, structure in enumerate(structures):
        n_rows = len(structure) if per_atom else 1
        label = getattr(structure, field_name).get(name)
        if label is not None:
            values.append(label)
            rows.append(torch.arange(offset, offset + n_rows) if per_atom
                        else torch.tensor([i]))  # fmt: skip
        offset += n_rows
    if not values:
        return None, None
    return values, torch.cat(rows).to(device)


def references(
    structures: List[Structure],
    targets: Dict[str, TargetInfo],
    dtype: torch.dtype,
    device: torch.device,
) -> Batch:
    """The labels of ``structures``, with the prediction rows they belong to."""
    batch = Batch()
    for name, info in targets.items():
        for kind, field_name, per_atom, join in (
            ("values", "targets", info.per_atom, torch.cat),
            ("forces", "forces", True, torch.cat),
            ("stress", "stress", False, torch.stack),
        ):
            values, rows = _labelled(structures, name, field_name, per_atom, device)
            if values is None:
                continue
            getattr(batch, kind)[name] = join(values).to(device=device, dtype=dtype)
            batch.rows[(name, kind)] = rows
    return batch


def predict(
    call: ModelCall,
    structures: List[Structure],
    requests: List[NeighborListOptions],
    targets: Dict[str, TargetInfo],
    dtype: torch.dtype,
    device: torch.device,
    forces: bool = True,
    stress: bool = True,
    training: bool = False,
) -> Batch:
    """Predict ``targets`` (and their forces/stress when asked) for ``structures``."""
    want_forces = forces and any("positions" in t.gradients for t in targets.values())
    want_stress = stress and any("strain" in t.gradients for t in targets.values())
    want_stress = want_stress and all(bool(s.pbc.all()) for s in structures)
    systems, positions, strains = [], [], []
    for structure in structures:
        strain = None
        if want_stress:
            strain = torch.eye(3, dtype=dtype, device=device, requires_grad=True)
            strains.append(strain)
        system, leaf = make_system(
            structure,
            requests,
            dtype,
            device,
            positions_grad=want_forces,
            strain=strain,
        )
        systems.append(system)
        positions.append(leaf)
    outputs = {
        name: ModelOutput(
            unit=info.unit, sample_kind="atom" if info.per_atom else "system"
        )
        for name, info in targets.items()
    }
    with torch.set_grad_enabled(training or want_forces or want_stress):
        predictions = call(systems, outputs)
    batch = Batch()
    for name, info in targets.items():
        # components flattened (spherical blocks side by side), as in references
        values = flat_rows(predictions[name])
        batch.values[name] = values
        inputs = []
        if want_forces and "positions" in info.gradients:
            inputs += positions
        if want_stress and "strain" in info.gradients:
            inputs += strains
        if not inputs:
            continue
        gradients = torch.autograd.grad(
            values.sum(),
            inputs,
            create_graph=training,
            retain_graph=True,
            allow_unused=True,
        )
        # an atom with no neighbour does not enter the graph: its gradient is zero
        gradients = [
            torch.zeros_like(x) if g is None else g for g, x in zip(gradients, inputs)
        ]
        n_positions = (
            len(positions) if want_forces and "positions" in info.gradients else 0
        )
        if n_positions:
            batch.forces[name] = -torch.cat(gradients[:n_positions])
        if len(gradients) > n_positions:
            volumes = torch.stack([torch.det(s.cell).abs() for s in structures]).to(
                device=device, dtype=dtype
            )
            batch.stress[name] = torch.stack(gradients[n_positions:]) / volumes.view(
                -1, 1, 1
            )
    if not training:
        batch = Batch(
            {k: v.detach() for k, v in batch.values.items()},
            {k: v.detach() for k, v in batch.forces.items()},
            {k: v.detach() for k, v in batch.stress.items()},
        )
    return batch
