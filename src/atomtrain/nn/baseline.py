"""Composition baseline and scale: the part of a target the network need not learn.

Per-element values fitted by least squares before training are added back at
prediction time (so exported models include them); the network's output is
multiplied by a per-target scale so that it only has to produce O(1) numbers.
"""

import torch


class TargetBaseline(torch.nn.Module):
    """``atomic * scale + composition[type]`` for one target."""

    def __init__(self, target_name: str, n_types: int, n_properties: int):
        super().__init__()
        self.target_name = target_name
        self.register_buffer("composition", torch.zeros(n_types, n_properties))
        self.register_buffer("scale", torch.ones(n_properties))

    def forward(self, atomic: torch.Tensor, type_index: torch.Tensor) -> torch.Tensor:
        return atomic * self.scale + self.composition[type_index]


class TypeIndex(torch.nn.Module):
    """Map atomic numbers to 0..n_types-1, refusing types the model never saw."""

    def __init__(self, atomic_types: list[int]):
        super().__init__()
        table = torch.full((max(atomic_types) + 1,), -1, dtype=torch.long)
        table[torch.tensor(atomic_types)] = torch.arange(len(atomic_types))
        self.register_buffer("table", table, persistent=False)

    def forward(self, types: torch.Tensor) -> torch.Tensor:
        types = types.to(torch.long)
        if int(types.max()) >= self.table.shape[0] or int(types.min()) < 0:
            raise ValueError("this model does not know some of the atomic types")
        index = self.table[types]
        if bool((index < 0).any()):
            raise ValueError("this model does not know some of the atomic types")
        return index
