"""SOAP power spectrum in plain torch (no compiled extension in exported models).

The neighbour density of each atom is expanded on radial functions times real
spherical harmonics, then contracted into rotation-invariant power-spectrum
features. Neighbour species are mixed into ``pseudo_species`` learnable channels
(alchemical compression, initialised to one-hot when they fit): the feature size
does not grow with the number of elements, and a model can learn new elements.
"""

import math
from typing import List

import torch

from atomtrain.nn.cutoff import cosine_cutoff
from atomtrain.nn.spherical import SphericalHarmonics


class SoapPowerSpectrum(torch.nn.Module):
    def __init__(
        self,
        n_types: int,
        cutoff: float,
        cutoff_width: float,
        max_radial: int,
        max_angular: int,
        pseudo_species: int,
    ):
        super().__init__()
        self.cutoff = cutoff
        self.cutoff_width = cutoff_width
        self.max_radial = max_radial
        self.max_angular = max_angular
        self.pseudo_species = pseudo_species
        self.spherical_harmonics = SphericalHarmonics(max_angular)
        self.species_mixing = torch.nn.Parameter(
            initial_mixing(n_types, pseudo_species)
        )
        self.register_buffer(
            "frequencies",
            math.pi / cutoff * torch.arange(1, max_radial + 1, dtype=torch.float64),
            persistent=False,
        )
        channels = pseudo_species * max_radial
        rows, cols = torch.triu_indices(channels, channels)
        self.register_buffer("triu_rows", rows, persistent=False)
        self.register_buffer("triu_cols", cols, persistent=False)
        # off-diagonal pairs appear twice in the full contraction
        pair_weight = torch.where(rows == cols, 1.0, math.sqrt(2.0))
        self.register_buffer("pair_weight", pair_weight, persistent=False)
        self.n_features = (max_angular + 1) * rows.shape[0]

    def add_types(self, n_new: int) -> None:
        """Grow the species mixing for ``n_new`` additional elements."""
        extra = torch.randn(n_new, self.pseudo_species) / math.sqrt(self.pseudo_species)
        self.species_mixing = torch.nn.Parameter(
            torch.cat([self.species_mixing.data, extra.to(self.species_mixing)])
        )

    def forward(
        self,
        type_index: torch.Tensor,
        centers: torch.Tensor,
        neighbors: torch.Tensor,
        vectors: torch.Tensor,
    ) -> torch.Tensor:
        n_atoms = type_index.shape[0]
        n_types = self.species_mixing.shape[0]
        distances = torch.linalg.vector_norm(vectors, dim=1, keepdim=True)
        envelope = cosine_cutoff(distances, self.cutoff, self.cutoff_width)
        frequencies = self.frequencies.to(vectors.dtype)
        radial = torch.sin(distances * frequencies) / distances * envelope  # (E, n)
        harmonics = self.spherical_harmonics(vectors)  # (E, (L+1)^2)
        edge = (radial.unsqueeze(2) * harmonics.unsqueeze(1)).reshape(
            radial.shape[0], self.max_radial * harmonics.shape[1]
        )
        # density resolved by neighbour element, then mixed into pseudo species
        slot = centers * n_types + type_index[neighbors]
        density = torch.zeros(
            (n_atoms * n_types, edge.shape[1]), dtype=edge.dtype, device=edge.device
        ).index_add_(0, slot, edge)
        density = density.reshape(n_atoms, n_types, self.max_radial, -1)
        density = torch.einsum("atnk,ts->asnk", density, self.species_mixing)
        density = density.reshape(n_atoms, self.pseudo_species * self.max_radial, -1)
        features: List[torch.Tensor] = []
        for angular in range(self.max_angular + 1):
            block = density[:, :, angular * angular : (angular + 1) * (angular + 1)]
            gram = torch.einsum("aim,ajm->aij", block, block)
            pairs = gram[:, self.triu_rows, self.triu_cols] * self.pair_weight
            features.append(pairs / math.sqrt(2 * angular + 1))
        return torch.cat(features, dim=1)


def initial_mixing(n_types: int, pseudo_species: int) -> torch.Tensor:
    """One-hot mixing when every element gets its own channel, random otherwise."""
    mixing = torch.randn(n_types, pseudo_species) / math.sqrt(pseudo_species)
    if n_types <= pseudo_species:
        mixing = torch.zeros(n_types, pseudo_species)
        mixing[:, :n_types] = torch.eye(n_types)
    return mixing
