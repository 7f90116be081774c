"""Additive physics terms of a model: ZBL repulsion and long-range
electrostatics, each ``None`` when its hyper turns it off.

Each term is an :class:`EnergyTerm`. Models hold them as ``zbl`` and
``long_range`` attributes and inherit :class:`AdditiveTerms` for the neighbour
lists the terms need and for their per-atom contributions to each target
(added by ``nn.heads.with_terms``).
"""

from typing import Dict, List, Optional

import torch
from metatomic.torch import ModelOutput, NeighborListOptions, System

from atomtrain.data.info import DatasetInfo


class EnergyTerm(torch.nn.Module):
    """A per-atom energy added to every energy target of a model, after the
    composition baseline. Subclasses compute :meth:`atomic_energies` from the
    systems and one per-atom tensor (the model's type index for a fixed
    repulsion, its invariant features for learnt charges).

    ``options`` is the neighbour list the term reads; ``own_list`` says
    whether the model must request it (False when the term reuses one of the
    model's own lists)."""

    def __init__(
        self, dataset_info: DatasetInfo, options: NeighborListOptions, own_list: bool
    ):
        super().__init__()
        self.targets: List[str] = [
            name for name, target in dataset_info.targets.items() if target.is_energy
        ]
        self.options = options
        self.own_list = own_list

    def requested_neighbor_lists(self) -> List[NeighborListOptions]:
        """The list it needs beyond the model's (none when it reuses one)."""
        return [self.options] if self.own_list else []

    def forward(
        self,
        systems: List[System],
        inputs: torch.Tensor,
        outputs: Dict[str, ModelOutput],
    ) -> Dict[str, torch.Tensor]:
        """Per-atom energies ``(n_atoms, 1)`` for each requested energy target
        (atoms in the order of ``flatten_systems``), computed once for all."""
        result: Dict[str, torch.Tensor] = {}
        energies: Optional[torch.Tensor] = None
        for name in self.targets:
            if name in outputs:
                if energies is None:
                    energies = self.atomic_energies(systems, inputs)
                result[name] = energies
        return result

    def atomic_energies(
        self, systems: List[System], inputs: torch.Tensor
    ) -> torch.Tensor:
        """Per-atom energies ``(n_atoms, 1)`` in eV."""
        raise NotImplementedError("an EnergyTerm computes its atomic energies")


class AdditiveTerms:
    """For models with ``zbl`` and ``long_range`` attributes (None when off)."""

    @torch.jit.unused
    def term_lists(self) -> List[NeighborListOptions]:
        """The neighbour lists the terms request beyond the model's own (asked
        in Python only: a wrapper that scripts the model's method must not
        compile the terms' list helpers)."""
        lists: List[NeighborListOptions] = []
        for term in (self.zbl, self.long_range):
            if term is not None:
                lists += term.requested_neighbor_lists()
        return lists

    def additive_terms(
        self,
        systems: List[System],
        type_index: torch.Tensor,
        features: torch.Tensor,
        outputs: Dict[str, ModelOutput],
    ) -> List[Dict[str, torch.Tensor]]:
        """Per-atom contributions of each term to the requested targets;
        ``features`` are the invariant features latent charges are read from."""
        terms: List[Dict[str, torch.Tensor]] = []
        if self.zbl is not None:
            terms.append(self.zbl(systems, type_index, outputs))
        if self.long_range is not None:
            terms.append(self.long_range(systems, features, outputs))
        return terms
