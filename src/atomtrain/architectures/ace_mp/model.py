"""Element embedding -> ACE layers -> per-layer scalar read-outs summed."""

from typing import List

import torch
from metatomic.torch import ModelMetadata, NeighborListOptions, System

from atomtrain.architectures.ace_mp.documentation import ModelHypers
from atomtrain.architectures.ace_mp.layers import Density, ElementDensity, Update
from atomtrain.data.info import DatasetInfo, TargetInfo, display_name
from atomtrain.errors import UserError
from atomtrain.nn.baseline import TypeIndex
from atomtrain.nn.flat import FlatSystems
from atomtrain.nn.heads import (
    TargetHead,
    check_equivariant,
)
from atomtrain.nn.heads_model import AtomFeatures, HeadsModel, no_equivariant_features
from atomtrain.nn.last_layer import linear_weights, with_bias_column
from atomtrain.nn.long_range import make_long_range
from atomtrain.nn.outputs import declared_outputs
from atomtrain.nn.radial import BesselBasis, polynomial_envelope
from atomtrain.nn.spherical import SphericalHarmonics, l1_to_cartesian
from atomtrain.nn.zbl import make_zbl


class Readout(TargetHead):
    """One target from the scalars of every layer: linear for the inner layers,
    a small network for the last (as in MACE), summed, then scaled and shifted
    by the target's composition baseline."""

    def __init__(
        self, target: TargetInfo, n_types: int, channels: int, layers: int, hidden: int
    ):
        super().__init__(target, n_types)
        n = target.num_subtargets
        self.channels = channels
        self.inner = torch.nn.ModuleList(
            [torch.nn.Linear(channels, n, bias=False) for _ in range(layers - 1)]
        )
        self.last = torch.nn.Sequential(
            torch.nn.Linear(channels, hidden),
            torch.nn.SiLU(),
            torch.nn.Linear(hidden, n),
        )

    def forward(self, h: torch.Tensor, type_index: torch.Tensor):
        """``h`` ``(N, C L)``: the scalars of every layer side by side."""
        C = self.channels
        total = self.last(h[:, len(self.inner) * C :])
        for k, linear in enumerate(self.inner):
            total = total + linear(h[:, k * C : (k + 1) * C])
        return self.baseline(total, type_index)

    def last_layer_features(self, h: torch.Tensor, type_index: torch.Tensor):
        """The inner layers' scalars and the last network's hidden layer, with
        a column of ones."""
        split = len(self.inner) * self.channels
        hidden = self.last[1](self.last[0](h[:, split:]))
        return torch.cat([h[:, :split], with_bias_column(hidden)], dim=1)

    def last_layer_weights(self) -> torch.Tensor:
        scale = self.baseline.scale
        blocks: List[torch.Tensor] = []
        for linear in self.inner:
            blocks.append(linear_weights(linear.weight, None, scale))
        last = self.last[2]
        blocks.append(linear_weights(last.weight, last.bias, scale))
        return torch.cat(blocks, dim=0)


class AceMp(HeadsModel[ModelHypers]):
    __checkpoint_version__ = 2
    __default_metadata__ = ModelMetadata(
        references={
            "architecture": [
                "https://arxiv.org/abs/2206.07697",  # MACE
                "https://doi.org/10.1103/PhysRevB.99.014104",  # ACE
                "https://arxiv.org/abs/2401.10216",  # Gaunt tensor product
            ],
        }
    )

    def __init__(self, hypers: ModelHypers, dataset_info: DatasetInfo):
        super().__init__(hypers, dataset_info)
        for target in dataset_info.targets.values():
            check_equivariant(target, "ACE-MP")
        n_types = len(dataset_info.atomic_types)
        channels, n_layers = hypers["channels"], hypers["num_layers"]
        l_max, hidden_l = hypers["l_max"], min(hypers["hidden_l_max"], hypers["l_max"])
        equivariant = [t for t in dataset_info.targets.values() if not t.is_scalar]
        if equivariant and hidden_l < 1:
            raise UserError(
                f"target '{display_name(equivariant[0].name)}' is a vector, tensor "
                "or spherical target, which ACE-MP reads from its l >= 1 features; "
                f"architecture.model.hidden_l_max is {hypers['hidden_l_max']} and "
                f"l_max is {l_max}: set both to 1 or more."
            )
        # the last layer keeps its l >= 1 features only when a head reads them
        last_l = hidden_l if equivariant else 0
        self.hidden_l = hidden_l
        self.features_in_float32 = bool(hypers["features_in_float32"])
        self.cutoff = float(hypers["cutoff"])
        self.radial_count = hypers["num_radial"]
        self.type_index = TypeIndex(dataset_info.atomic_types)
        self.embedding = torch.nn.Embedding(n_types, channels)
        self.radial = BesselBasis(self.cutoff, hypers["num_radial"])
        self.harmonics = SphericalHarmonics(l_max)
        n_basis, correlation = hypers["num_radial"], hypers["correlation"]
        self.first_density = ElementDensity(channels, l_max, n_basis, n_types)
        self.densities = torch.nn.ModuleList(
            [
                Density(channels, hidden_l, l_max, n_basis, hypers["radial_hidden"])
                for _ in range(n_layers - 1)
            ]
        )
        self.updates = torch.nn.ModuleList(
            [
                Update(
                    channels,
                    0 if t == 0 else hidden_l,
                    l_max,
                    hidden_l if t < n_layers - 1 else last_l,
                    correlation,
                    n_types,
                )
                for t in range(n_layers)
            ]
        )
        self.heads = torch.nn.ModuleDict(
            {
                name: Readout(
                    target, n_types, channels, n_layers, hypers["readout_hidden"]
                )
                for name, target in dataset_info.targets.items()
                if target.is_scalar
            }
        )
        # equivariant heads gate the l = 1 (and l = 2) features of every layer
        # with networks of every layer's scalars
        width = channels * n_layers
        n_l2 = width if hidden_l >= 2 else 0
        hidden = hypers["readout_hidden"]
        self.add_equivariant_heads(dataset_info, width, width, hidden, n_l2)
        self.neighbor_options = NeighborListOptions(
            cutoff=self.cutoff, full_list=True, strict=False
        )
        self.zbl = make_zbl(hypers, dataset_info, [self.neighbor_options])
        self.long_range = make_long_range(
            hypers, channels, dataset_info, [self.neighbor_options]
        )
        self.outputs = declared_outputs(dataset_info, "ACE-MP")

    @staticmethod
    def upgrade_from_v1(checkpoint: dict) -> dict:
        """Version 2 added ``features_in_float32``; version 1 models computed
        every feature in the model's precision."""
        checkpoint["model_hypers"]["features_in_float32"] = False
        return checkpoint

    def scalar_features(
        self, types: torch.Tensor, centers, neighbors, vectors
    ) -> List[torch.Tensor]:
        """The invariant features ``(N, C)`` after each layer."""
        features = self.layer_features(types, centers, neighbors, vectors)
        return [x[:, :, 0] for x in features]

    def layer_features(
        self, types: torch.Tensor, centers, neighbors, vectors
    ) -> List[torch.Tensor]:
        """The features ``(N, C, K)`` after each layer (``K = 1`` for the last
        layer of a model with scalar targets only)."""
        if self.features_in_float32:
            vectors = vectors.to(torch.float32)
        distances = torch.linalg.vector_norm(vectors, dim=1)
        envelope = polynomial_envelope(distances, self.cutoff)
        basis = self.radial(distances)
        harmonics = self.harmonics(vectors)
        count = torch.zeros(types.shape[0], dtype=vectors.dtype, device=vectors.device)
        # 1 / sqrt(1 + smooth neighbour count): densities stay O(1) in dense
        # and sparse systems alike, and vary smoothly as atoms cross the cutoff
        normalization = (1.0 + count.index_add(0, centers, envelope)).rsqrt()
        x = self.embedding(types).to(vectors.dtype).unsqueeze(2)
        density = self.first_density(
            types[neighbors],
            harmonics,
            basis,
            envelope,
            centers,
            types.shape[0],
            normalization,
        )
        features: List[torch.Tensor] = []
        # layer t > 0 builds its density from layer t - 1's features; TorchScript
        # can neither index a ModuleList with a variable nor zip a sliced one,
        # hence the search for the density module of layer t
        for t, update in enumerate(self.updates):
            if t > 0:
                for k, layer in enumerate(self.densities):
                    if k == t - 1:
                        density = layer(
                            x,
                            harmonics,
                            basis,
                            envelope,
                            centers,
                            neighbors,
                            normalization,
                        )
            x = update(density, x, types)
            features.append(x)
        return features

    def atom_features(
        self, systems: List[System], flat: FlatSystems, type_index: torch.Tensor
    ) -> AtomFeatures:
        """Every layer's scalars ``(N, C L)`` (read by all heads; the latent
        charges read the last layer's), its ``l = 1`` features as Cartesian
        vectors ``(N, 3, C L)`` and its ``l = 2`` features ``(N, 5, C L)`` (none
        below ``hidden_l_max`` 2, and no equivariant features at all when no
        head reads them)."""
        dtype = flat.vectors.dtype
        features = [
            x.to(dtype)
            for x in self.layer_features(
                type_index, flat.centers, flat.neighbors, flat.vectors
            )
        ]
        h = torch.cat([x[:, :, 0] for x in features], dim=1)
        last_scalars = features[-1][:, :, 0]
        if len(self.cartesian_heads) + len(self.spherical_heads) == 0:
            v, l2 = no_equivariant_features(h)
            return AtomFeatures(h, last_scalars, v, l2)
        v = torch.cat([l1_to_cartesian(x[:, :, 1:4], dim=2) for x in features], 1)
        if self.hidden_l >= 2:
            l2 = torch.cat([x[:, :, 4:9] for x in features], dim=1).transpose(1, 2)
        else:
            l2 = torch.zeros((h.shape[0], 5, 0), dtype=h.dtype, device=h.device)
        return AtomFeatures(h, last_scalars, v.transpose(1, 2), l2)

    def restart(self, dataset_info: DatasetInfo) -> "AceMp":
        """Continue on data with new elements or targets: every known weight is
        kept (per-element rows moved to the elements' new positions), new
        elements and new heads start from fresh weights."""
        grown = self.grown(dataset_info)
        if grown is None:
            return self
        new, position = grown
        n_types = len(self.dataset_info.atomic_types)
        new_state = new.state_dict()
        with torch.no_grad():
            for key, value in self.state_dict().items():
                if key not in new_state:
                    continue
                if key == "first_density.weight":  # (l, element x basis, C)
                    shape = (value.shape[0], -1, self.radial_count, value.shape[2])
                    new_state[key].view(shape)[:, position] = value.view(shape)
                    continue
                per_element = (
                    key == "embedding.weight"
                    or key.endswith("baseline.composition")
                    or ".products." in key
                )
                if per_element and value.shape[0] == n_types:
                    new_state[key][position] = value
                else:
                    new_state[key].copy_(value)
        new.load_state_dict(new_state)
        return new
