"""Atom types -> attention message passing -> per-target read-out networks."""

from typing import Dict, List, Optional, Tuple

import torch
from metatensor.torch import Labels, TensorMap
from metatomic.torch import ModelMetadata, ModelOutput, NeighborListOptions, System

from atomtrain.abc import ModelInterface
from atomtrain.architectures.gnn.documentation import ModelHypers
from atomtrain.architectures.gnn.layers import EdgeGeometry, Interaction, Update
from atomtrain.data.info import DatasetInfo, TargetInfo
from atomtrain.errors import UserError
from atomtrain.nn.baseline import TypeIndex
from atomtrain.nn.direct_forces import stress_per_volume
from atomtrain.nn.flat import FlatSystems, flatten_systems, selected_mask
from atomtrain.nn.heads import (
    CartesianHead,
    EquivariantOutputs,
    SphericalHead,
    TargetHead,
    check_equivariant,
    gate_network,
    take_heads,
    with_terms,
)
from atomtrain.nn.last_layer import linear_weights, with_bias_column
from atomtrain.nn.outputs import declared_outputs
from atomtrain.nn.radial import BesselBasis, polynomial_envelope
from atomtrain.nn.soap import SoapPowerSpectrum
from atomtrain.nn.terms import AdditiveTerms
from atomtrain.nn.zbl import make_zbl, upgrade_without_zbl


class ScalarHead(TargetHead):
    """A small network from an atom's scalar features to one target, scaled and
    shifted by the target's composition baseline."""

    def __init__(self, target: TargetInfo, n_types: int, width: int, hidden: int):
        super().__init__(target, n_types)
        self.network = gate_network(width, hidden, target.num_subtargets)

    def forward(self, h: torch.Tensor, type_index: torch.Tensor) -> torch.Tensor:
        return self.baseline(self.network(h), type_index)


class Gnn(ModelInterface[ModelHypers], EquivariantOutputs, AdditiveTerms):
    __checkpoint_version__ = 3
    __supported_devices__ = ["cuda", "cpu"]
    __supported_dtypes__ = [torch.float64, torch.float32]
    __default_metadata__ = ModelMetadata(
        references={
            "architecture": [
                "https://arxiv.org/abs/2102.03150",  # PaiNN
                "https://arxiv.org/abs/2202.02541",  # TorchMD-Net
                "https://arxiv.org/abs/2305.19302",  # PET
            ],
        }
    )

    def __init__(self, hypers: ModelHypers, dataset_info: DatasetInfo):
        super().__init__(hypers, dataset_info)
        width, heads = hypers["width"], hypers["num_heads"]
        if width % heads != 0:
            raise UserError(
                f"architecture.model.width ({width}) must be a multiple of "
                f"architecture.model.num_heads ({heads})."
            )
        for target in dataset_info.targets.values():
            check_equivariant(target, "the GNN")
            if target.num_subtargets < 1:
                raise UserError(f"target '{target.name}' has no components.")
        n_types = len(dataset_info.atomic_types)
        vectors, n_radial = hypers["num_vectors"], hypers["num_radial"]
        self.cutoff = float(hypers["cutoff"])
        self.type_index = TypeIndex(dataset_info.atomic_types)
        self.embedding = torch.nn.Embedding(n_types, width)
        self.radial = BesselBasis(self.cutoff, n_radial)
        self.interactions = torch.nn.ModuleList(
            [
                Interaction(width, vectors, n_radial, heads, hypers["key_width"])
                for _ in range(hypers["num_layers"])
            ]
        )
        self.updates = torch.nn.ModuleList(
            [Update(width, vectors) for _ in range(hypers["num_layers"])]
        )
        self.num_vectors = vectors
        self.heads = torch.nn.ModuleDict(
            {
                name: ScalarHead(target, n_types, width, hypers["head_width"])
                for name, target in dataset_info.targets.items()
                if target.is_scalar
            }
        )
        self.cartesian_heads = torch.nn.ModuleDict(
            {
                name: CartesianHead(
                    target, n_types, width, vectors, hypers["head_width"]
                )
                for name, target in dataset_info.targets.items()
                if target.rank > 0
            }
        )
        no_l2 = 0  # spherical L = 2 parts come from products of the vectors
        self.spherical_heads = torch.nn.ModuleDict(
            {
                name: SphericalHead(
                    target, n_types, width, vectors, hypers["head_width"], no_l2
                )
                for name, target in dataset_info.targets.items()
                if target.is_spherical
            }
        )
        self.neighbor_options = NeighborListOptions(
            cutoff=self.cutoff, full_list=True, strict=False
        )
        # the SOAP start of the scalar features (None when turned off)
        descriptor = hypers["descriptor"]
        self.half_options = NeighborListOptions(
            cutoff=self.cutoff, full_list=False, strict=False
        )
        self.descriptor = None
        self.descriptor_input = None
        if descriptor["pseudo_species"] > 0:
            self.descriptor = SoapPowerSpectrum(
                n_types,
                self.cutoff,
                self.cutoff / 4.0,
                descriptor["max_radial"],
                descriptor["max_angular"],
                descriptor["pseudo_species"],
            )
            self.descriptor_input = torch.nn.Sequential(
                torch.nn.LayerNorm(self.descriptor.n_features),
                torch.nn.Linear(self.descriptor.n_features, width),
            )
        self.long_range = None  # no long-range electrostatics in the GNN
        self.zbl = None  # first None: it may reuse the lists requested so far
        lists = self.requested_neighbor_lists()
        self.zbl = make_zbl(hypers, dataset_info, lists)
        self.outputs = declared_outputs(dataset_info, "the GNN")

    @staticmethod
    def upgrade_from_v1(checkpoint: dict) -> dict:
        """Version 2 starts the scalar features from a SOAP descriptor; version
        1 models had none, and keep none."""
        checkpoint["model_hypers"]["descriptor"] = {
            "max_radial": 6,
            "max_angular": 4,
            "pseudo_species": 0,
        }
        return checkpoint

    # version 3 added the zbl hyper
    upgrade_from_v2 = staticmethod(upgrade_without_zbl)

    def is_head_parameter(self, name: str) -> bool:
        return name.startswith(("heads.", "cartesian_heads.", "spherical_heads."))

    def requested_neighbor_lists(self) -> List[NeighborListOptions]:
        lists = [self.neighbor_options]
        if self.descriptor is not None:
            lists.append(self.half_options)
        return lists + self.term_lists()

    def supported_outputs(self) -> Dict[str, ModelOutput]:
        return self.outputs

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
                last = head.network[3]
                return linear_weights(last.weight, last.bias, head.baseline.scale)
        return self.cartesian_last_layer_weights(target)

    def geometry(self, flat: FlatSystems, n_atoms: int) -> EdgeGeometry:
        distances = torch.linalg.vector_norm(flat.vectors, dim=1)
        envelope = polynomial_envelope(distances, self.cutoff)
        count = torch.zeros(n_atoms, dtype=distances.dtype, device=distances.device)
        count = count.index_add(0, flat.centers, envelope)
        return EdgeGeometry(
            flat.centers,
            flat.neighbors,
            flat.vectors / distances.unsqueeze(1),
            self.radial(distances),
            envelope,
            (1.0 + count).rsqrt().unsqueeze(1),
        )

    def features(
        self, systems: List[System], flat: FlatSystems, type_index: torch.Tensor
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """Scalar and vector features of every atom after message passing."""
        n_atoms = type_index.shape[0]
        edges = self.geometry(flat, n_atoms)
        h = self.embedding(type_index)
        if self.descriptor is not None and self.descriptor_input is not None:
            half = flatten_systems(systems, self.half_options, expand_half=False)
            soap = self.descriptor(
                type_index, half.centers, half.neighbors, half.vectors
            )
            h = h + self.descriptor_input(soap)
        v = torch.zeros((n_atoms, 3, self.num_vectors), dtype=h.dtype, device=h.device)
        for interaction, update in zip(self.interactions, self.updates):
            h, v = interaction(h, v, edges)
            h, v = update(h, v)
        return h, v

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
        flat = flatten_systems(systems, self.neighbor_options)
        type_index = self.type_index(flat.types)
        h, v = self.features(systems, flat, type_index)
        mask = selected_mask(flat, selected_atoms)
        terms = self.additive_terms(systems, type_index, h, outputs)
        results: Dict[str, TensorMap] = {}
        last_layer = torch.zeros(0)
        for name, head in self.heads.items():
            if name == target:
                network = head.network
                last_layer = with_bias_column(network[2](network[1](network[0](h))))
            if name in outputs:
                atomic = with_terms(head(h, type_index), name, terms)
                results[name] = head.tensor_map(atomic, flat, outputs[name], mask)
        # spherical L = 2 parts come from products of the vectors alone
        no_l2 = torch.zeros((h.shape[0], 5, 0), dtype=h.dtype, device=h.device)
        equivariant = self.equivariant_outputs(
            h, v, no_l2, type_index, flat, outputs, mask
        )
        if target != "" and last_layer.dim() == 1:
            last_layer = self.cartesian_last_layer(h, v, target)
        results.update(stress_per_volume(equivariant, systems))
        return results, last_layer

    def restart(self, dataset_info: DatasetInfo) -> "Gnn":
        """Continue on data with new elements or new targets: known weights are
        kept, new element embeddings and new heads start from fresh weights."""
        grown = self.grown(dataset_info)
        if grown is None:
            return self
        new, position = grown
        heads = ("heads.", "cartesian_heads.", "spherical_heads.")
        state = {
            k: v
            for k, v in self.state_dict().items()
            if not k.startswith(("embedding.",) + heads)
            and k != "descriptor.species_mixing"
        }
        new.load_state_dict(state, strict=False)
        with torch.no_grad():
            new.embedding.weight[position] = self.embedding.weight
            if new.descriptor is not None and self.descriptor is not None:
                mixing = self.descriptor.species_mixing
                new.descriptor.species_mixing[position] = mixing
        take_heads(new.heads, self.heads, position)
        take_heads(new.cartesian_heads, self.cartesian_heads, position)
        take_heads(new.spherical_heads, self.spherical_heads, position)
        return new
