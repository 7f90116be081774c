"""SOAP power spectrum -> per-element networks -> per-target heads."""

from typing import List

import torch
from metatomic.torch import ModelMetadata, NeighborListOptions, System

from atomtrain.architectures.soap_bpnn.documentation import ModelHypers
from atomtrain.data.info import DatasetInfo, TargetInfo, display_name
from atomtrain.errors import UserError
from atomtrain.nn.baseline import TypeIndex
from atomtrain.nn.flat import FlatSystems
from atomtrain.nn.heads import TargetHead
from atomtrain.nn.heads_model import AtomFeatures, HeadsModel, no_equivariant_features
from atomtrain.nn.last_layer import linear_weights, per_element_features
from atomtrain.nn.long_range import make_long_range
from atomtrain.nn.outputs import declared_outputs
from atomtrain.nn.soap import SoapPowerSpectrum
from atomtrain.nn.zbl import make_zbl, upgrade_without_zbl


class ElementNetworks(torch.nn.Module):
    """One multilayer perceptron per element, applied to that element's atoms."""

    def __init__(self, n_types: int, n_in: int, width: int, n_layers: int):
        super().__init__()
        self.width = width
        self.networks = torch.nn.ModuleList(
            [self.make(n_in, width, n_layers) for _ in range(n_types)]
        )

    @staticmethod
    def make(n_in: int, width: int, n_layers: int) -> torch.nn.Module:
        layers: List[torch.nn.Module] = []
        for i in range(n_layers):
            layers += [
                torch.nn.Linear(n_in if i == 0 else width, width),
                torch.nn.SiLU(),
            ]
        return torch.nn.Sequential(*layers)

    def forward(self, features: torch.Tensor, type_index: torch.Tensor):
        hidden = torch.zeros(
            (features.shape[0], self.width),
            dtype=features.dtype,
            device=features.device,
        )
        for i, network in enumerate(self.networks):
            atoms = torch.nonzero(type_index == i).reshape(-1)
            hidden = hidden.index_copy(0, atoms, network(features[atoms]))
        return hidden


class ElementLinearHead(TargetHead):
    """Per-element linear read-out of one target, scaled and shifted by its
    composition baseline."""

    def __init__(self, target: TargetInfo, n_types: int, width: int):
        super().__init__(target, n_types)
        self.linears = torch.nn.ModuleList(
            [torch.nn.Linear(width, target.num_subtargets) for _ in range(n_types)]
        )

    def forward(self, hidden: torch.Tensor, type_index: torch.Tensor):
        out = torch.zeros(
            (hidden.shape[0], self.baseline.scale.shape[0]),
            dtype=hidden.dtype,
            device=hidden.device,
        )
        for i, linear in enumerate(self.linears):
            atoms = torch.nonzero(type_index == i).reshape(-1)
            out = out.index_copy(0, atoms, linear(hidden[atoms]))
        return self.baseline(out, type_index)

    def last_layer_features(self, hidden: torch.Tensor, type_index: torch.Tensor):
        """Each atom's ``[hidden, 1]`` in the block of its element's linear."""
        n_types = self.baseline.composition.shape[0]
        return per_element_features(hidden, type_index, n_types)

    def last_layer_weights(self) -> torch.Tensor:
        scale = self.baseline.scale
        blocks: List[torch.Tensor] = []
        for linear in self.linears:
            blocks.append(linear_weights(linear.weight, linear.bias, scale))
        return torch.cat(blocks, dim=0)

    def moved_key(self, key: str, position: List[int]) -> str:
        """``linears.I.*`` of type ``I`` goes to the type's new position."""
        if not key.startswith("linears."):
            return key
        _, index, rest = key.split(".", 2)
        return f"linears.{position[int(index)]}.{rest}"


class SoapBpnn(HeadsModel[ModelHypers]):
    __checkpoint_version__ = 2
    __default_metadata__ = ModelMetadata(
        references={
            "architecture": [
                "https://doi.org/10.1103/PhysRevLett.98.146401",
                "https://doi.org/10.1103/PhysRevB.87.184115",
            ],
        }
    )

    def __init__(self, hypers: ModelHypers, dataset_info: DatasetInfo):
        super().__init__(hypers, dataset_info)
        for target in dataset_info.targets.values():
            if target.rank > 0:
                raise UserError(
                    f"target '{display_name(target.name)}' is a Cartesian tensor "
                    f"of rank {target.rank}, and SOAP-BPNN predicts invariant "
                    "(scalar) targets only. Train it with the 'gnn' architecture, "
                    "whose vector features give equivariant outputs."
                )
            if target.is_spherical:
                raise UserError(
                    f"target '{display_name(target.name)}' is a spherical tensor "
                    f"(irreps {target.irreps}), and SOAP-BPNN predicts invariant "
                    "(scalar) targets only. Train it with 'gnn' or 'ace_mp'."
                )
        soap, bpnn = hypers["soap"], hypers["bpnn"]
        n_types = len(dataset_info.atomic_types)
        self.type_index = TypeIndex(dataset_info.atomic_types)
        self.soap = SoapPowerSpectrum(
            n_types,
            soap["cutoff"],
            soap["cutoff_width"],
            soap["max_radial"],
            soap["max_angular"],
            soap["pseudo_species"],
        )
        n_features = self.soap.n_features
        self.norm = (
            torch.nn.LayerNorm(n_features) if bpnn["layernorm"] else torch.nn.Identity()
        )
        width = bpnn["num_neurons_per_layer"]
        self.networks = ElementNetworks(
            n_types, n_features, width, bpnn["num_hidden_layers"]
        )
        self.heads = torch.nn.ModuleDict(
            {
                name: ElementLinearHead(target, n_types, width)
                for name, target in dataset_info.targets.items()
            }
        )
        # invariant features only: no equivariant heads
        self.cartesian_heads = torch.nn.ModuleDict()
        self.spherical_heads = torch.nn.ModuleDict()
        self.neighbor_options = NeighborListOptions(
            cutoff=soap["cutoff"], full_list=False, strict=False
        )
        self.zbl = make_zbl(hypers, dataset_info, [self.neighbor_options])
        self.long_range = make_long_range(
            hypers, width, dataset_info, [self.neighbor_options]
        )
        self.outputs = declared_outputs(dataset_info, "SOAP-BPNN")

    # version 2 added the zbl hyper
    upgrade_from_v1 = staticmethod(upgrade_without_zbl)

    def atom_features(
        self, systems: List[System], flat: FlatSystems, type_index: torch.Tensor
    ) -> AtomFeatures:
        """The last hidden layer of each atom's element network, read by the
        heads and by the latent charges."""
        soap = self.soap(type_index, flat.centers, flat.neighbors, flat.vectors)
        hidden = self.networks(self.norm(soap), type_index)
        vectors, l2 = no_equivariant_features(hidden)
        return AtomFeatures(hidden, hidden, vectors, l2)

    def restart(self, dataset_info: DatasetInfo) -> "SoapBpnn":
        """Continue on data with new elements or new targets: known weights are
        kept, new elements and heads start from fresh weights."""
        grown = self.grown(dataset_info)
        if grown is None:
            return self
        new, position = grown
        with torch.no_grad():
            new.soap.species_mixing[position] = self.soap.species_mixing
            new.norm.load_state_dict(self.norm.state_dict())
            for old, index in enumerate(position):
                new.networks.networks[index].load_state_dict(
                    self.networks.networks[old].state_dict()
                )
            if self.long_range is not None and new.long_range is not None:
                new.long_range.load_state_dict(self.long_range.state_dict())
        self.take_all_heads(new, position)
        return new
