"""The forward pass of models that read every target with a head.

gnn, ace_mp and soap_bpnn differ in how they compute the features of each atom;
from there on they do the same: scalar heads read the invariant features, the
additive physics terms (ZBL, electrostatics) are added per target, Cartesian
and spherical heads read the invariant and equivariant features, and the
last-layer features of one target (what uncertainty needs) come from the same
pass. :class:`HeadsModel` does that part once; an architecture implements
:meth:`HeadsModel.atom_features` and ``restart``.
"""

from typing import Dict, List, NamedTuple, Optional, Tuple

import torch
from metatensor.torch import Labels, TensorMap
from metatomic.torch import ModelOutput, NeighborListOptions, System

from atomtrain.abc import HypersType, ModelInterface
from atomtrain.data.info import DatasetInfo
from atomtrain.errors import UserError
from atomtrain.nn.direct_forces import stress_per_volume
from atomtrain.nn.flat import FlatSystems, flatten_systems, selected_mask
from atomtrain.nn.heads import (
    CartesianHead,
    EquivariantOutputs,
    SphericalHead,
    take_heads,
    with_terms,
)
from atomtrain.nn.terms import AdditiveTerms


HEAD_PREFIXES = ("heads.", "cartesian_heads.", "spherical_heads.")


class AtomFeatures(NamedTuple):
    """What an architecture computes for each atom of a batch."""

    invariant: torch.Tensor
    """``(N, F)``: what the scalar, Cartesian and spherical heads read."""
    for_terms: torch.Tensor
    """``(N, F')``: what the additive terms read (latent charges)."""
    vectors: torch.Tensor
    """``(N, 3, V)`` polar vector features (``V = 0`` for invariant models)."""
    l2: torch.Tensor
    """``(N, 5, C)`` natural-parity ``l = 2`` features (``C = 0`` if none)."""


def no_equivariant_features(h: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """Empty vector ``(N, 3, 0)`` and ``l = 2`` ``(N, 5, 0)`` features."""
    n_atoms = h.shape[0]
    vectors = torch.zeros((n_atoms, 3, 0), dtype=h.dtype, device=h.device)
    return vectors, torch.zeros((n_atoms, 5, 0), dtype=h.dtype, device=h.device)


class HeadsModel(ModelInterface[HypersType], EquivariantOutputs, AdditiveTerms):
    """A model with ``heads`` (scalar targets), ``cartesian_heads`` and
    ``spherical_heads`` (module dictionaries, empty when unused),
    ``type_index``, ``neighbor_options``, ``zbl``, ``long_range`` and
    ``outputs`` (its declared outputs).

    A scalar head is a :class:`~atomtrain.nn.heads.TargetHead` whose
    ``forward(invariant, type_index)`` gives per-atom values and which has
    ``last_layer_features(invariant, type_index)`` and
    ``last_layer_weights()``."""

    # plain torch without compiled extensions: any device, either precision
    # (an architecture that needs less declares its own)
    __supported_devices__ = ["cuda", "cpu"]
    __supported_dtypes__ = [torch.float64, torch.float32]

    def __init__(self, hypers: HypersType, dataset_info: DatasetInfo):
        super().__init__(hypers, dataset_info)
        for target in dataset_info.targets.values():
            if target.num_subtargets < 1:
                raise UserError(f"target '{target.name}' has no components.")

    def atom_features(
        self, systems: List[System], flat: FlatSystems, type_index: torch.Tensor
    ) -> AtomFeatures:
        """The features of every atom of ``flat`` (the architecture's network)."""
        raise NotImplementedError("a HeadsModel computes its atom features")

    def forward(
        self,
        systems: List[System],
        outputs: Dict[str, ModelOutput],
        selected_atoms: Optional[Labels] = None,
    ) -> Dict[str, TensorMap]:
        return self.forward_with_features(systems, outputs, selected_atoms, "")[0]

    def forward_with_features(
        self,
        systems: List[System],
        outputs: Dict[str, ModelOutput],
        selected_atoms: Optional[Labels],
        target: str,
    ) -> Tuple[Dict[str, TensorMap], torch.Tensor]:
        """``forward`` and, from the same pass, the last-layer features of
        ``target`` (empty for ``""``): what uncertainty outputs need."""
        # pairs as the model requested them (half lists stay half)
        flat = flatten_systems(systems, self.neighbor_options, expand_half=False)
        type_index = self.type_index(flat.types)
        features = self.atom_features(systems, flat, type_index)
        h = features.invariant
        mask = selected_mask(flat, selected_atoms)
        terms = self.additive_terms(systems, type_index, features.for_terms, outputs)
        results: Dict[str, TensorMap] = {}
        last_layer = torch.zeros(0)
        for name, head in self.heads.items():
            if name == target:
                last_layer = head.last_layer_features(h, type_index)
            if name in outputs:
                atomic = with_terms(head(h, type_index), name, terms)
                results[name] = head.tensor_map(atomic, flat, outputs[name], mask)
        if len(self.cartesian_heads) + len(self.spherical_heads) == 0:
            return results, last_layer
        v = features.vectors
        equivariant = self.equivariant_outputs(
            h, v, features.l2, type_index, flat, outputs, mask
        )
        if target != "" and last_layer.dim() == 1:
            last_layer = self.cartesian_last_layer(h, v, target)
        results.update(stress_per_volume(equivariant, systems))
        return results, last_layer

    def last_layer_features(self, systems: List[System], target: str) -> torch.Tensor:
        """What ``target``'s last linear map(s) see, per atom, with a column of
        ones for the bias (see atomtrain.uncertainty)."""
        nothing: Dict[str, ModelOutput] = {}
        features = self.forward_with_features(systems, nothing, None, target)[1]
        if features.dim() < 2:
            raise ValueError("no last-layer features for target " + target)
        return features

    def last_layer_weights(self, target: str) -> torch.Tensor:
        for name, head in self.heads.items():
            if name == target:
                return head.last_layer_weights()
        return self.cartesian_last_layer_weights(target)

    def requested_neighbor_lists(self) -> List[NeighborListOptions]:
        return [self.neighbor_options] + self.term_lists()

    def supported_outputs(self) -> Dict[str, ModelOutput]:
        return self.outputs

    def is_head_parameter(self, name: str) -> bool:
        return name.startswith(HEAD_PREFIXES)

    def add_equivariant_heads(
        self,
        dataset_info: DatasetInfo,
        width: int,
        vectors: int,
        hidden: int,
        extra_l2: int,
    ) -> None:
        """``cartesian_heads`` and ``spherical_heads`` for the Cartesian and
        spherical targets of ``dataset_info``, reading ``width`` invariant and
        ``vectors`` vector features (and ``extra_l2`` ``l = 2`` ones)."""
        n_types = len(dataset_info.atomic_types)
        targets = dataset_info.targets.items()
        self.cartesian_heads = torch.nn.ModuleDict(
            {
                name: CartesianHead(target, n_types, width, vectors, hidden)
                for name, target in targets
                if target.rank > 0
            }
        )
        self.spherical_heads = torch.nn.ModuleDict(
            {
                name: SphericalHead(target, n_types, width, vectors, hidden, extra_l2)
                for name, target in targets
                if target.is_spherical
            }
        )

    def take_all_heads(self, new: "HeadsModel", position: List[int]) -> None:
        """For ``restart``: every head of this model continues in ``new``."""
        take_heads(new.heads, self.heads, position)
        take_heads(new.cartesian_heads, self.cartesian_heads, position)
        take_heads(new.spherical_heads, self.spherical_heads, position)
