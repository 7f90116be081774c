"""The batches of an epoch, and how far the current epoch has got (saved in
checkpoints, so that a run resumes mid-epoch at the same batch)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Sequence

import torch


def batches_of(
    sizes: Sequence[int], batch_size: int, seed: int | None, max_atoms: int = 0
) -> List[List[int]]:
    """Batches of structure indices, shuffled with ``seed``; ``max_atoms`` > 0
    bounds the atoms of a batch instead of counting structures."""
    n = len(sizes)
    order = list(range(n))
    if seed is not None:
        generator = torch.Generator().manual_seed(seed)
        order = torch.randperm(n, generator=generator).tolist()
    if max_atoms <= 0:
        return [order[i : i + batch_size] for i in range(0, n, batch_size)]
    batches: List[List[int]] = []
    current: List[int] = []
    atoms = 0
    for index in order:
        if current and atoms + sizes[index] > max_atoms:
            batches.append(current)
            current, atoms = [], 0
        current.append(index)
        atoms += sizes[index]
    return batches + ([current] if current else [])


@dataclass
class EpochProgress:
    """What the current epoch has done so far (saved for mid-epoch resumes)."""

    step: int = 0
    loss_sum: float = 0.0
    count: int = 0
    metric_sums: Dict[tuple, list] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {
            "step": self.step,
            "loss_sum": self.loss_sum,
            "count": self.count,
            "metric_sums": [[*k, *v] for k, v in self.metric_sums.items()],
        }

    @classmethod
    def from_dict(cls, data: dict) -> EpochProgress:
        sums = {(r[0], r[1]): list(r[2:]) for r in data["metric_sums"]}
        return cls(data["step"], data["loss_sum"], data["count"], sums)
