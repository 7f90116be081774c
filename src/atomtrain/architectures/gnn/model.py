"""Atom types -> attention message passing -> per-target read-out networks."""

from typing import List

import torch
from metatomic.torch import ModelMetadata, NeighborListOptions, System

from atomtrain.architectures.gnn.documentation import ModelHypers
from atomtrain.architectures.gnn.layers import EdgeGeometry, Interaction, Update
from atomtrain.data.info import DatasetInfo, TargetInfo
from atomtrain.errors import UserError
from atomtrain.nn.baseline import TypeIndex
from atomtrain.nn.flat import FlatSystems, flatten_systems
from atomtrain.nn.heads import TargetHead, check_equivariant, gate_network
from atomtrain.nn.heads_model import HEAD_PREFIXES, AtomFeatures, HeadsModel
from atomtrain.nn.last_layer import linear_weights, with_bias_column
from atomtrain.nn.outputs import declared_outputs
from atomtrain.nn.radial import BesselBasis, polynomial_envelope
from atomtrain.nn.soap import SoapPowerSpectrum
from atomtrain.nn.zbl import make_zbl, upgrade_without_zbl


class ScalarHead(TargetHead):
    """A small network from an atom's scalar features to one target, scaled and
    shifted by the target's composition baseline."""

    def __init__(self, target: TargetInfo, n_types: int, width: int, hidden: int):
        super().__init__(target, n_types)
        self.network = gate_network(width, hidden, target.num_subtargets)

    def forward(self, h: torch.Tensor, type_index: torch.Tensor) -> torch.Tensor:
        return self.baseline(self.network(h), type_index)

    def last_layer_features(self, h: torch.Tensor, type_index: torch.Tensor):
        """The network's last hidden layer, with a column of ones."""
        network = self.network
        return with_bias_column(network[2](network[1](network[0](h))))

    def last_layer_weights(self) -> torch.Tensor:
        last = self.network[3]
        return linear_weights(last.weight, last.bias, self.baseline.scale)


class Gnn(HeadsModel[ModelHypers]):
    __checkpoint_version__ = 3
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
        # spherical L = 2 parts come from products of the vectors
        self.add_equivariant_heads(
            dataset_info, width, vectors, hypers["head_width"], extra_l2=0
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

    def requested_neighbor_lists(self) -> List[NeighborListOptions]:
        lists = [self.neighbor_options]
        if self.descriptor is not None:
            lists.append(self.half_options)
        return lists + self.term_lists()

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

    def atom_features(
        self, systems: List[System], flat: FlatSystems, type_index: torch.Tensor
    ) -> AtomFeatures:
        """Scalar and vector features of every atom after message passing
        (spherical L = 2 parts come from products of the vectors alone)."""
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
        no_l2 = torch.zeros((n_atoms, 5, 0), dtype=h.dtype, device=h.device)
        return AtomFeatures(h, h, v, no_l2)

    def restart(self, dataset_info: DatasetInfo) -> "Gnn":
        """Continue on data with new elements or new targets: known weights are
        kept, new element embeddings and new heads start from fresh weights."""
        grown = self.grown(dataset_info)
        if grown is None:
            return self
        new, position = grown
        state = {
            k: v
            for k, v in self.state_dict().items()
            if not k.startswith(("embedding.",) + HEAD_PREFIXES)
            and k != "descriptor.species_mixing"
        }
        new.load_state_dict(state, strict=False)
        with torch.no_grad():
            new.embedding.weight[position] = self.embedding.weight
            if new.descriptor is not None and self.descriptor is not None:
                mixing = self.descriptor.species_mixing
                new.descriptor.species_mixing[position] = mixing
        self.take_all_heads(new, position)
        return new
