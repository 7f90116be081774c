"""Flatten a list of metatomic Systems into one graph without padding."""

from typing import List, Optional

import torch
from metatensor.torch import Labels
from metatomic.torch import NeighborListOptions, System


class FlatSystems:
    """Atoms of all systems concatenated, with index tensors back to each system."""

    def __init__(
        self,
        types: torch.Tensor,
        system_index: torch.Tensor,
        atom_index: torch.Tensor,
        centers: torch.Tensor,
        neighbors: torch.Tensor,
        vectors: torch.Tensor,
        n_systems: int,
    ):
        self.types = types
        self.system_index = system_index
        self.atom_index = atom_index
        self.centers = centers
        self.neighbors = neighbors
        self.vectors = vectors
        self.n_systems = n_systems


def flatten_systems(
    systems: List[System], options: NeighborListOptions, expand_half: bool = True
) -> FlatSystems:
    """Concatenate atoms and the neighbour pairs of ``options`` over ``systems``.

    Half lists are expanded to full lists (each pair in both directions) unless
    ``expand_half`` is False.
    """
    types: List[torch.Tensor] = []
    system_index: List[torch.Tensor] = []
    atom_index: List[torch.Tensor] = []
    centers: List[torch.Tensor] = []
    neighbors: List[torch.Tensor] = []
    vectors: List[torch.Tensor] = []
    offset = 0
    device = systems[0].positions.device
    for i, system in enumerate(systems):
        n_atoms = len(system)
        types.append(system.types)
        system_index.append(torch.full((n_atoms,), i, dtype=torch.long, device=device))
        atom_index.append(torch.arange(n_atoms, dtype=torch.long, device=device))
        nl = system.get_neighbor_list(options)
        pairs = nl.samples.values[:, :2].to(torch.long) + offset
        values = nl.values.reshape(-1, 3)
        centers.append(pairs[:, 0])
        neighbors.append(pairs[:, 1])
        vectors.append(values)
        if expand_half and not options.full_list:
            centers.append(pairs[:, 1])
            neighbors.append(pairs[:, 0])
            vectors.append(-values)
        offset += n_atoms
    return FlatSystems(
        torch.cat(types),
        torch.cat(system_index),
        torch.cat(atom_index),
        torch.cat(centers),
        torch.cat(neighbors),
        torch.cat(vectors),
        len(systems),
    )


def selected_mask(
    flat: FlatSystems, selected_atoms: Optional[Labels]
) -> Optional[torch.Tensor]:
    """Boolean mask of the atoms in ``selected_atoms`` (None selects all)."""
    if selected_atoms is None:
        return None
    n_total = flat.types.shape[0]
    counts = torch.bincount(flat.system_index, minlength=flat.n_systems)
    offsets = torch.cumsum(counts, 0) - counts
    selected = selected_atoms.values.to(flat.types.device).to(torch.long)
    index = offsets[selected[:, 0]] + selected[:, 1]
    mask = torch.zeros(n_total, dtype=torch.bool, device=flat.types.device)
    mask[index] = True
    return mask
