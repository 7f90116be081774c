"""One atomistic structure with its reference targets, as stored in memory."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch


@dataclass
class Structure:
    """Positions in Å, targets in eV-based units, neighbour lists cached per cutoff.

    ``forces`` and ``stress`` are keyed by the name of the energy target they are
    gradients of. ``neighbors`` maps ``(cutoff, full_list)`` to int32 rows
    ``(i, j, a, b, c)`` per pair (atom indices and integer cell shift), computed
    once and reused.
    """

    types: torch.Tensor
    positions: torch.Tensor
    cell: torch.Tensor
    pbc: torch.Tensor
    targets: dict[str, torch.Tensor] = field(default_factory=dict)
    forces: dict[str, torch.Tensor] = field(default_factory=dict)
    stress: dict[str, torch.Tensor] = field(default_factory=dict)
    neighbors: dict[tuple[float, bool], torch.Tensor] = field(default_factory=dict)
    source: str = ""

    def __len__(self) -> int:
        return len(self.types)
