"""Building blocks of ACE-MP: an atomic-cluster-expansion layer on a graph.

Features of an atom are ``(N, C, K)`` tensors: ``C`` channels, each with the
``K = (l_max + 1)^2`` components of real spherical harmonics up to ``l_max``
(ordered ``(l, m)``). A layer builds the neighbour density of each atom in that
basis (the ACE ``A`` features), raises it to higher body order by products of
the density with itself (``correlation``), and maps the result back to the
atom's features. Products use Gaunt coefficients, so every feature keeps its
natural parity and every scalar is invariant under rotations and reflections.
"""

import torch
import torch.nn.functional as F

from atomtrain.nn.gaunt import SphereGridProduct, degree_of_components, gaunt_tensor


class EquivariantLinear(torch.nn.Module):
    """Channel mixing with one weight matrix per ``l`` (components of the same
    ``l`` share it, which keeps the map equivariant); no bias."""

    def __init__(self, channels_in: int, channels_out: int, l_max: int):
        super().__init__()
        self.weight = torch.nn.Parameter(
            torch.randn(l_max + 1, channels_in, channels_out) / channels_in**0.5
        )
        self.register_buffer("degree", degree_of_components(l_max), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight = self.weight.to(x.dtype)[self.degree[: x.shape[2]]]  # (K, Ci, Co)
        return torch.einsum("nck,kcd->ndk", x, weight)


class ElementWeights(torch.nn.Module):
    """A weight per element, channel and ``l``, broadcast over components."""

    def __init__(self, n_types: int, channels: int, l_max: int, init: float = 1.0):
        super().__init__()
        self.weight = torch.nn.Parameter(
            torch.full((n_types, channels, l_max + 1), init)
        )
        self.register_buffer("degree", degree_of_components(l_max), persistent=False)

    def forward(
        self, type_index: torch.Tensor, n_components: int, dtype: torch.dtype
    ) -> torch.Tensor:
        weight = self.weight.to(dtype)[type_index]
        return weight[:, :, self.degree[:n_components]]


class RadialNetwork(torch.nn.Module):
    """Learnable radial functions: an MLP of a Bessel basis, times the smooth
    envelope so that every function vanishes (with two derivatives) at the
    cutoff."""

    def __init__(self, n_basis: int, hidden: int, n_outputs: int):
        super().__init__()
        self.network = torch.nn.Sequential(
            torch.nn.Linear(n_basis, hidden),
            torch.nn.SiLU(),
            torch.nn.Linear(hidden, hidden),
            torch.nn.SiLU(),
            torch.nn.Linear(hidden, n_outputs),
        )

    def forward(self, basis: torch.Tensor, envelope: torch.Tensor) -> torch.Tensor:
        # in the basis' precision, whatever the weights'
        dtype = basis.dtype
        first, second, last = self.network[0], self.network[2], self.network[4]
        h = F.silu(F.linear(basis, first.weight.to(dtype), first.bias.to(dtype)))
        h = F.silu(F.linear(h, second.weight.to(dtype), second.bias.to(dtype)))
        h = F.linear(h, last.weight.to(dtype), last.bias.to(dtype))
        return h * envelope.unsqueeze(1)


class ElementDensity(torch.nn.Module):
    """The first layer's ``A`` features, where a neighbour is only its element:
    ``A_i = sum_j R_{z_j}(r_ij) Y(r_ij)`` with radial functions that are
    learnt combinations of the basis per neighbour element, ``l`` and channel.
    The sum over neighbours runs on the small ``(basis x harmonics)`` product
    of each pair, sorted by the neighbour's element; channels are made
    afterwards, per atom: pairs never carry ``channels x harmonics`` tensors."""

    def __init__(self, channels: int, l_max: int, n_basis: int, n_types: int):
        super().__init__()
        self.n_types, self.n_basis, self.channels = n_types, n_basis, channels
        inputs = n_types * n_basis
        self.weight = torch.nn.Parameter(
            torch.randn(l_max + 1, inputs, channels) / inputs**0.5
        )
        self.register_buffer("degree", degree_of_components(l_max), persistent=False)

    def forward(
        self,
        neighbor_types: torch.Tensor,
        harmonics: torch.Tensor,
        basis: torch.Tensor,
        envelope: torch.Tensor,
        centers: torch.Tensor,
        n_atoms: int,
        normalization: torch.Tensor,
    ) -> torch.Tensor:
        n_components = harmonics.shape[1]
        pair = (basis * envelope.unsqueeze(1)).unsqueeze(2) * harmonics.unsqueeze(1)
        rows = centers * self.n_types + neighbor_types
        sums = torch.zeros(
            (n_atoms * self.n_types, self.n_basis, n_components),
            dtype=basis.dtype,
            device=basis.device,
        )
        sums = sums.index_add(0, rows, pair).reshape(n_atoms, -1, n_components)
        weight = self.weight.to(basis.dtype)[self.degree]  # (K, Z * n, C)
        density = torch.bmm(sums.permute(2, 0, 1), weight).permute(1, 2, 0)
        return density * normalization.reshape(-1, 1, 1)


class Density(torch.nn.Module):
    """The ACE ``A`` features: ``A_i = sum_j R(r_ij) [x_j (x) Y(r_ij)]``, where
    the neighbour's features ``x_j`` (up to ``l_in``) are coupled to the bond's
    harmonics (up to ``l_max``) with a learnt radial weight per channel and per
    pair of input and output ``l``."""

    def __init__(self, channels: int, l_in: int, l_max: int, n_basis: int, hidden: int):
        super().__init__()
        self.channels, self.l_in, self.l_max = channels, l_in, l_max
        self.linear = EquivariantLinear(channels, channels, l_in)
        self.radial = RadialNetwork(
            n_basis, hidden, (l_in + 1) * (l_max + 1) * channels
        )
        # (K_b, K_in * K): the Gaunt tensor, one matrix product from the bond's
        # harmonics to the coupling of every input component
        gaunt = gaunt_tensor(l_in, l_max, l_max)  # (K, K_in, K_b)
        self.register_buffer(
            "coupling_basis",
            gaunt.permute(2, 1, 0).reshape(gaunt.shape[2], -1).contiguous(),
            persistent=False,
        )
        # (l, K): 1 where component K has degree l; spreads a weight per l over
        # the components by a matrix product, whose backward is another one
        # (indexing by degree costs a zero fill and a scatter in each backward)
        spread = F.one_hot(degree_of_components(l_max)).T
        self.register_buffer("spread", spread.to(torch.float64), persistent=False)

    def forward(
        self,
        x: torch.Tensor,
        harmonics: torch.Tensor,
        basis: torch.Tensor,
        envelope: torch.Tensor,
        centers: torch.Tensor,
        neighbors: torch.Tensor,
        normalization: torch.Tensor,
    ) -> torch.Tensor:
        n_edges, n_in = harmonics.shape[0], self.l_in + 1
        k_out = (self.l_max + 1) * (self.l_max + 1)
        neighbor = self.linear(x)[neighbors]  # (E, C, K_in)
        coupling = harmonics @ self.coupling_basis.to(x.dtype)  # (E, K_in K)
        radial = self.radial(basis, envelope)  # (E, l_in x l x C)
        spread = self.spread.to(x.dtype)
        # one l_in at a time, on contiguous (E, C, K) tensors: per-edge
        # tensors stay l_in + 1 times smaller than a product of every l_in at
        # once (which measured no faster on ethanol), and no view into a shared
        # tensor zero-fills it in the backward
        message = torch.zeros(
            (n_edges, self.channels, k_out), dtype=x.dtype, device=x.device
        )
        width = (self.l_max + 1) * self.channels
        for l_in in range(n_in):
            start, stop = l_in * l_in, (l_in + 1) * (l_in + 1)
            coupled = torch.bmm(
                neighbor[:, :, start:stop].contiguous(),
                coupling[:, start * k_out : stop * k_out].reshape(
                    n_edges, stop - start, k_out
                ),
            )
            per_l = radial[:, l_in * width : (l_in + 1) * width].reshape(
                n_edges, self.l_max + 1, self.channels
            )
            weights = per_l.transpose(1, 2).reshape(-1, self.l_max + 1) @ spread
            message = message + coupled * weights.reshape(n_edges, self.channels, k_out)
        density = torch.zeros(
            (x.shape[0], self.channels, k_out), dtype=x.dtype, device=x.device
        )
        density = density.index_add(0, centers, message)
        return density * normalization.reshape(-1, 1, 1)


class Products(torch.nn.Module):
    """Higher body order: ``P_1 = A``, ``P_nu = (w_nu * P_{nu-1}) (x) A``, and the
    output ``sum_nu u_nu * P_nu`` up to ``l_out``, with weights ``w`` and ``u``
    per element, channel and ``l`` (as MACE's element-dependent contraction)."""

    def __init__(
        self, channels: int, l_max: int, l_out: int, correlation: int, n_types: int
    ):
        super().__init__()
        self.l_max, self.l_out, self.correlation = l_max, l_out, correlation
        self.couple = SphereGridProduct(l_max)
        self.first = ElementWeights(n_types, channels, l_out)
        self.inner = torch.nn.ModuleList(
            [ElementWeights(n_types, channels, l_max) for _ in range(correlation - 1)]
        )
        self.outer = torch.nn.ModuleList(
            [
                ElementWeights(n_types, channels, l_out, 1.0 / (nu + 2))
                for nu in range(correlation - 1)
            ]
        )

    def forward(self, density: torch.Tensor, type_index: torch.Tensor) -> torch.Tensor:
        k_out = (self.l_out + 1) * (self.l_out + 1)
        k_max = (self.l_max + 1) * (self.l_max + 1)
        n, c = density.shape[0], density.shape[1]
        density_on_grid = self.couple.on_grid(density.reshape(n * c, k_max))
        product = density
        dtype = density.dtype
        result = self.first(type_index, k_out, dtype) * density[:, :, :k_out]
        last = len(self.inner)
        for nu, (inner, outer) in enumerate(zip(self.inner, self.outer)):
            # the highest power is only needed up to l_out
            k_nu = k_out if nu == last - 1 else k_max
            weighted = inner(type_index, k_max, dtype) * product
            weighted = weighted.reshape(n * c, k_max)
            product = self.couple(weighted, density_on_grid, k_nu).reshape(n, c, k_nu)
            result = result + outer(type_index, k_out, dtype) * product[:, :, :k_out]
        return result


class Update(torch.nn.Module):
    """From the ``A`` features to an atom's new features: channel mixing, the
    products, a linear map back, plus a linear map of the old features (the
    residual connection) for the ``l`` both have."""

    def __init__(
        self,
        channels: int,
        l_in: int,
        l_max: int,
        l_out: int,
        correlation: int,
        n_types: int,
    ):
        super().__init__()
        self.l_in, self.l_out = l_in, l_out
        self.mix = EquivariantLinear(channels, channels, l_max)
        self.products = Products(channels, l_max, l_out, correlation, n_types)
        self.output = EquivariantLinear(channels, channels, l_out)
        self.residual = EquivariantLinear(channels, channels, min(l_in, l_out))

    def forward(
        self, density: torch.Tensor, x: torch.Tensor, type_index: torch.Tensor
    ) -> torch.Tensor:
        new = self.output(self.products(self.mix(density), type_index))
        keep = min(self.l_in, self.l_out) + 1
        k_keep = keep * keep
        kept = self.residual(x[:, :, :k_keep])
        if k_keep == new.shape[2]:
            return new + kept
        padding = torch.zeros(
            (new.shape[0], new.shape[1], new.shape[2] - k_keep),
            dtype=new.dtype,
            device=new.device,
        )
        return new + torch.cat([kept, padding], dim=2)
