"""SOAP power spectrum in plain torch (no compiled extension in exported models).

The neighbour density of each atom is expanded on radial functions times real
spherical harmonics, then contracted into rotation-invariant power-spectrum
features. Neighbour species are mixed into ``pseudo_species`` learnable channels
(alchemical compression, initialised to one-hot when they fit): the feature size
does not grow with the number of elements, and a model can learn new elements.

The density comes from a half neighbour list; the in-memory model computes it
with hand-written first derivatives (fast training), the exported TorchScript
model with plain autograd (exact to any order): see ``atomtrain.nn.soap_density``.
"""

import math

import torch

from atomtrain.nn.soap_density import density_first_order, mixed_density_autograd
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
        self.register_buffer("triu", rows * channels + cols, persistent=False)
        # off-diagonal pairs appear twice in the full contraction; 1/sqrt(2l+1)
        pair_weight = torch.where(rows == cols, 1.0, math.sqrt(2.0))
        l_weight = 1.0 / torch.sqrt(2.0 * torch.arange(max_angular + 1) + 1.0)
        weights = l_weight.unsqueeze(1) * pair_weight.unsqueeze(0)
        self.register_buffer("weights", weights, persistent=False)
        self.n_features = (max_angular + 1) * rows.shape[0]
        # every l block padded to 2 l_max + 1 columns (pointing at a zero column
        # K), so that one batched product gives the Gram matrices of all l
        width = 2 * max_angular + 1
        n_harmonics = (max_angular + 1) ** 2
        padded = torch.full((max_angular + 1, width), n_harmonics)
        for l in range(max_angular + 1):  # noqa: E741
            padded[l, : 2 * l + 1] = torch.arange(l * l, (l + 1) * (l + 1))
        self.register_buffer("padded_index", padded.reshape(-1), persistent=False)
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
        frequencies = self.frequencies.to(vectors.dtype)
        parity = self.parity.to(vectors.dtype)
        if torch.jit.is_scripting():  # exported: derivatives of any order
            harmonics = self.spherical_harmonics(vectors)
            mixed = mixed_density_autograd(
                vectors, centers, neighbors, type_index, self.species_mixing,
                frequencies, self.cutoff, self.cutoff_width, harmonics, parity,
            )  # fmt: skip
            # (atom, pseudo species * n, K) -> (pseudo species, atom, n, K)
            mixed = mixed.reshape(
                n_atoms, self.pseudo_species, self.max_radial, self.parity.shape[0]
            ).transpose(0, 1)
            return self.power_spectrum(mixed)
        n_types = self.species_mixing.shape[0]
        # rows ordered (element, atom): the mixing is then one matrix product
        rows = type_index[neighbors] * n_atoms + centers
        reverse_rows = type_index[centers] * n_atoms + neighbors
        density = density_first_order(
            vectors, rows, reverse_rows, n_atoms * n_types, frequencies,
            self.cutoff, self.cutoff_width, self.max_angular, parity,
        )  # fmt: skip
        # (element, atom * n * K) -> (pseudo species, atom, n, K)
        mixed = self.species_mixing.t() @ density.reshape(
            n_types, n_atoms * density.shape[1]
        )
        mixed = mixed.reshape(
            self.pseudo_species, n_atoms, self.max_radial, self.parity.shape[0]
        )
        return self.power_spectrum(mixed)

    def power_spectrum(self, mixed: torch.Tensor) -> torch.Tensor:
        """Invariants ``sum_m c_ilm c_jlm`` of channels ``i <= j`` for every l, from
        densities ``(pseudo species, atoms, radial, harmonics)``, in a few large
        operations (one batched product for all l) rather than a loop over l."""
        S, n_atoms, R = mixed.shape[0], mixed.shape[1], mixed.shape[2]
        L = self.max_angular + 1
        zero = torch.zeros((S, n_atoms, R, 1), dtype=mixed.dtype, device=mixed.device)
        blocks = torch.cat([mixed, zero], dim=3).index_select(3, self.padded_index)
        blocks = blocks.reshape(S, n_atoms, R, L, 2 * L - 1).permute(1, 3, 0, 2, 4)
        blocks = blocks.reshape(n_atoms * L, S * R, 2 * L - 1)
        gram = torch.bmm(blocks, blocks.transpose(1, 2))
        pairs = gram.reshape(n_atoms, L, S * R * S * R).index_select(2, self.triu)
        return (pairs * self.weights.to(mixed.dtype)).reshape(n_atoms, self.n_features)


def initial_mixing(n_types: int, pseudo_species: int) -> torch.Tensor:
    """One-hot mixing when every element gets its own channel, random otherwise."""
    mixing = torch.randn(n_types, pseudo_species) / math.sqrt(pseudo_species)
    if n_types <= pseudo_species:
        mixing = torch.zeros(n_types, pseudo_species)
        mixing[:, :n_types] = torch.eye(n_types)
    return mixing
