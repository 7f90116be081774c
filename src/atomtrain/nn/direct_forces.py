"""Direct (non-conservative) stress: from a sum of atomic tensors to a stress.

A ``non_conservative_stress`` target is a per-structure symmetric rank-2
tensor, predicted like any Cartesian target as a sum of per-atom contributions
(``R σ_i R^T`` under rotations). A sum over atoms is extensive, a stress is not:
dividing by the cell volume makes the prediction of a supercell equal to that
of its cell, as for the conservative stress (derivative of the energy with
respect to strain, over the volume). Non-periodic structures have no volume
and get a zero stress. Direct forces need nothing of the sort: they are the
per-atom vectors of a Cartesian rank-1 head.
"""

from typing import Dict, List

import torch
from metatensor.torch import TensorBlock, TensorMap
from metatomic.torch import System


def is_direct_stress(name: str) -> bool:
    """Whether ``name`` is metatomic's direct stress output (or a variant)."""
    return name.split("/")[0] == "non_conservative_stress"


def stress_per_volume(
    results: Dict[str, TensorMap], systems: List[System]
) -> Dict[str, TensorMap]:
    """``results`` with every direct stress divided by its structure's volume
    (per-structure samples ``system``; zero for non-periodic structures)."""
    for name in list(results.keys()):
        if not is_direct_stress(name):
            continue
        block = results[name].block()
        volumes: List[torch.Tensor] = []
        for system in systems:
            volume = torch.abs(torch.linalg.det(system.cell))
            if not bool(torch.all(system.pbc)):
                volume = torch.zeros_like(volume)
            volumes.append(volume)
        volume = torch.stack(volumes)[block.samples.column("system").to(torch.long)]
        safe = torch.where(volume > 0, volume, torch.ones_like(volume))
        inverse = torch.where(volume > 0, 1.0 / safe, torch.zeros_like(volume))
        values = block.values * inverse.reshape(-1, 1, 1, 1)
        new = TensorBlock(values, block.samples, block.components, block.properties)
        results[name] = TensorMap(results[name].keys, [new])
    return results
