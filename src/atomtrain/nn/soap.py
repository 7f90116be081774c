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

from atomtrain.nn.soap_density import density_autograd, density_first_order
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
        # harmonics of -r are (-1)^l those of r: the mirror of a half-list pair
        parity = [(-1.0) ** l for l in range(max_angular + 1) for _ in range(2 * l + 1)]
        self.register_buffer("parity", torch.tensor(parity), persistent=False)

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
        """Features of every atom from a half neighbour list (each pair once)."""
        n_atoms = type_index.shape[0]
        n_types = self.species_mixing.shape[0]
        # rows ordered (element, atom): the mixing is then one matrix product
        slots = type_index[neighbors] * n_atoms + centers
        reverse_slots = type_index[centers] * n_atoms + neighbors
        frequencies = self.frequencies.to(vectors.dtype)
        parity = self.parity.to(vectors.dtype)
        if torch.jit.is_scripting():  # exported: derivatives of any order
            harmonics = self.spherical_harmonics(vectors)
            density = density_autograd(
                vectors, slots, reverse_slots, n_atoms * n_types, frequencies,
                self.cutoff, self.cutoff_width, harmonics, parity,
            )  # fmt: skip
        else:
            density = density_first_order(
                vectors, slots, reverse_slots, n_atoms * n_types, frequencies,
                self.cutoff, self.cutoff_width, self.max_angular, parity,
            )  # fmt: skip
        # (element, atom * n * K) -> (pseudo species, atom, n, K)
        mixed = self.species_mixing.t() @ density.reshape(
            n_types, n_atoms * density.shape[1]
        )
        mixed = mixed.reshape(
            self.pseudo_species, n_atoms, self.max_radial, self.parity.shape[0]
        )
        features: List[torch.Tensor] = []
        for angular in range(self.max_angular + 1):
            block = mixed[:, :, :, angular * angular : (angular + 1) * (angular + 1)]
            block = block.permute(1, 0, 2, 3).reshape(
                n_atoms, self.pseudo_species * self.max_radial, 2 * angular + 1
            )
            gram = torch.bmm(block, block.transpose(1, 2))
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
