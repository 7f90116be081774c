"""SOAP power spectrum -> per-element networks -> per-target heads."""

from typing import Dict, List, Optional, Tuple

import torch
from metatensor.torch import Labels, TensorMap
from metatomic.torch import ModelMetadata, ModelOutput, NeighborListOptions, System

from atomtrain.abc import ModelInterface
from atomtrain.architectures.soap_bpnn.documentation import ModelHypers
from atomtrain.data.info import DatasetInfo, TargetInfo, display_name
from atomtrain.errors import UserError
from atomtrain.nn.baseline import TypeIndex
from atomtrain.nn.flat import flatten_systems, selected_mask
from atomtrain.nn.heads import TargetHead, take_heads, with_terms
from atomtrain.nn.last_layer import linear_weights, per_element_features
from atomtrain.nn.long_range import make_long_range
from atomtrain.nn.outputs import declared_outputs
from atomtrain.nn.soap import SoapPowerSpectrum
from atomtrain.nn.terms import AdditiveTerms
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

    def moved_key(self, key: str, position: List[int]) -> str:
        """``linears.I.*`` of type ``I`` goes to the type's new position."""
        if not key.startswith("linears."):
            return key
        _, index, rest = key.split(".", 2)
        return f"linears.{position[int(index)]}.{rest}"


class SoapBpnn(ModelInterface[ModelHypers], AdditiveTerms):
    __checkpoint_version__ = 2
    __supported_devices__ = ["cuda", "cpu"]
    __supported_dtypes__ = [torch.float64, torch.float32]
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
            if target.num_subtargets < 1:
                raise UserError(f"target '{target.name}' has no components.")
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

    def requested_neighbor_lists(self) -> List[NeighborListOptions]:
        return [self.neighbor_options] + self.term_lists()

    def supported_outputs(self) -> Dict[str, ModelOutput]:
        return self.outputs

    def last_layer_features(self, systems: List[System], target: str) -> torch.Tensor:
        """What ``target``'s last linear map(s) see, per atom, with a column of
        ones for the bias (see atomtrain.uncertainty)."""
        nothing: Dict[str, ModelOutput] = {}
        features = self.forward_with_features(systems, nothing, None, target)[1]
        if features.dim() != 2:
            raise ValueError("no last-layer features for target " + target)
        return features

    def last_layer_weights(self, target: str) -> torch.Tensor:
        for name, head in self.heads.items():
            if name == target:
                blocks: List[torch.Tensor] = []
                for linear in head.linears:
                    scale = head.baseline.scale
                    blocks.append(linear_weights(linear.weight, linear.bias, scale))
                return torch.cat(blocks, dim=0)
        raise ValueError("no last-layer weights for target " + target)

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
        flat = flatten_systems(systems, self.neighbor_options, expand_half=False)
        type_index = self.type_index(flat.types)
        features = self.soap(type_index, flat.centers, flat.neighbors, flat.vectors)
        hidden = self.networks(self.norm(features), type_index)
        mask = selected_mask(flat, selected_atoms)
        terms = self.additive_terms(systems, type_index, hidden, outputs)
        results: Dict[str, TensorMap] = {}
        last_layer = torch.zeros(0)
        for name, head in self.heads.items():
            if name == target:
                n_types = head.baseline.composition.shape[0]
                last_layer = per_element_features(hidden, type_index, n_types)
            if name in outputs:
                atomic = with_terms(head(hidden, type_index), name, terms)
                results[name] = head.tensor_map(atomic, flat, outputs[name], mask)
        return results, last_layer

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
        take_heads(new.heads, self.heads, position)
        return new
