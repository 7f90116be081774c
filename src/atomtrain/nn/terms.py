"""Additive physics terms of a model: ZBL repulsion and long-range
electrostatics, each ``None`` when its hyper turns it off.

Models hold them as ``zbl`` and ``long_range`` attributes and inherit
:class:`AdditiveTerms` for the neighbour lists the terms need and for their
per-atom contributions to each target (added by ``nn.heads.with_terms``).
"""

from typing import Dict, List

import torch
from metatomic.torch import ModelOutput, NeighborListOptions, System

from atomtrain.nn.long_range import long_range_lists
from atomtrain.nn.zbl import zbl_lists


class AdditiveTerms:
    """For models with ``zbl`` and ``long_range`` attributes (None when off)."""

    @torch.jit.unused
    def term_lists(self) -> List[NeighborListOptions]:
        """The neighbour lists the terms request beyond the model's own (asked
        in Python only: a wrapper that scripts the model's method must not
        compile the terms' list helpers)."""
        return zbl_lists(self.zbl) + long_range_lists(self.long_range)

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
