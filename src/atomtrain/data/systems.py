"""Neighbour lists computed once per structure, and metatomic Systems per batch.

Structures held in memory keep their lists for the whole training; structures
of a packed store are read anew at each access, so their lists are computed
when a batch is built and dropped with it (memory stays bounded).

The distance vectors are rebuilt from positions and cell at every evaluation so
that forces (position gradient) and stress (strain gradient) flow through them.
"""

from __future__ import annotations

from typing import List

import numpy as np
import torch
import vesin
from metatensor.torch import Labels, TensorBlock
from metatomic.torch import NeighborListOptions, System

from atomtrain.data.sequences import Dataset, in_memory
from atomtrain.data.structure import Structure


def _key(options: NeighborListOptions) -> tuple[float, bool]:
    return (float(options.cutoff), bool(options.full_list))


def compute_neighbors(structures: Dataset, requests: List[NeighborListOptions]) -> int:
    """Fill each in-memory structure's neighbour cache for every requested list
    (once); lazy structures are skipped (see :func:`neighbors_of`). Returns the
    number of in-memory structures."""
    structures = in_memory(structures)
    for options in requests:
        key = _key(options)
        calculator = vesin.NeighborList(cutoff=key[0], full_list=key[1])
        for structure in structures:
            if key not in structure.neighbors:
                structure.neighbors[key] = _compute(calculator, structure)
    return len(structures)


def _compute(calculator, structure: Structure) -> torch.Tensor:
    """Pairs and cell shifts as the ``(pairs, 5)`` int32 samples of a metatomic
    neighbour list: stored as they are used, at 20 bytes per pair."""
    pairs, shifts = calculator.compute(
        points=structure.positions.numpy(),
        box=structure.cell.numpy(),
        periodic=structure.pbc.numpy(),
        quantities="PS",
    )
    samples = np.concatenate([pairs, shifts], axis=1)
    if samples.size and np.abs(samples).max() > np.iinfo(np.int32).max:
        raise ValueError(f"neighbour list of {structure.source} overflows int32")
    return torch.from_numpy(samples.astype(np.int32)).reshape(-1, 5)


def neighbors_of(structure: Structure, options: NeighborListOptions) -> torch.Tensor:
    """The cached list of ``structure`` (int32 rows ``i, j, a, b, c``: pair and
    cell shift), computed now when it has none (a structure read from a packed
    store lives only as long as its batch)."""
    key = _key(options)
    if key not in structure.neighbors:
        calculator = vesin.NeighborList(cutoff=key[0], full_list=key[1])
        structure.neighbors[key] = _compute(calculator, structure)
    return structure.neighbors[key]


_COMPONENTS = Labels("xyz", torch.tensor([[0], [1], [2]]))
_PROPERTIES = Labels("distance", torch.tensor([[0]]))
_SAMPLE_NAMES = [
    "first_atom",
    "second_atom",
    "cell_shift_a",
    "cell_shift_b",
    "cell_shift_c",
]


def make_system(
    structure: Structure,
    requests: List[NeighborListOptions],
    dtype: torch.dtype,
    device: torch.device,
    positions_grad: bool = False,
    strain: torch.Tensor | None = None,
) -> tuple[System, torch.Tensor]:
    """A metatomic System with its neighbour lists; returns (system, positions).

    ``strain`` (3x3, requires grad) deforms positions and cell so that the energy
    derivative with respect to it gives the stress.
    """
    # detach: with the same dtype and device ``to`` returns the stored tensor
    # itself, which must never become part of an autograd graph
    positions = structure.positions.to(device=device, dtype=dtype).detach()
    cell = structure.cell.to(device=device, dtype=dtype).detach()
    if positions_grad:
        positions = positions.requires_grad_(True)
    leaf_positions = positions
    if strain is not None:
        positions = positions @ strain
        cell = cell @ strain
    system = System(
        types=structure.types.to(device=device, dtype=torch.int32),
        positions=positions,
        cell=cell,
        pbc=structure.pbc.to(device=device),
    )
    for options in requests:
        samples = neighbors_of(structure, options).to(device)
        vectors = (
            positions[samples[:, 1]]
            - positions[samples[:, 0]]
            + samples[:, 2:].to(dtype) @ cell
        )
        block = TensorBlock(
            values=vectors.reshape(-1, 3, 1),
            samples=Labels(_SAMPLE_NAMES, samples, assume_unique=True),
            components=[_COMPONENTS.to(device)],
            properties=_PROPERTIES.to(device),
        )
        system.add_neighbor_list(options, block)
    return system, leaf_positions
