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

    The cell vector along every non-periodic direction is set to zero on
    construction (see :func:`zero_nonperiodic_cell`), whichever reader built the
    structure (ASE files, packed stores, eval inputs).
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

    def __post_init__(self) -> None:
        self.cell = zero_nonperiodic_cell(self.cell, self.pbc)

    def __len__(self) -> int:
        return len(self.types)


def zero_nonperiodic_cell(cell: torch.Tensor, pbc: torch.Tensor) -> torch.Tensor:
    """``cell`` with the vectors of non-periodic directions set to zero.

    Molecules in public extended XYZ files (rMD17, MACE examples) often carry a
    placeholder box such as ``Lattice="50 0 0 0 50 0 0 0 50"`` with
    ``pbc="F F F"``; metatomic refuses a non-zero cell vector along a
    non-periodic direction, and the box means nothing for a molecule. With mixed
    periodicity (``T T F``) only the non-periodic vectors are zeroed. A cell that
    needs no change is returned as is.
    """
    periodic = pbc.to(device=cell.device, dtype=torch.bool).reshape(3, 1)
    if bool(periodic.all()) or not bool(cell[~periodic.reshape(3)].any()):
        return cell
    return torch.where(periodic, cell, torch.zeros((), dtype=cell.dtype))
