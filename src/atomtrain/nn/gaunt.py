"""Gaunt coefficients: how products of real spherical harmonics decompose.

``G[k, a, b] = sqrt(4 pi) * integral of Y_k Y_a Y_b over the sphere`` couples
two equivariant features (components ``a`` and ``b``, ordered ``(l, m)`` as in
:class:`atomtrain.nn.spherical.SphericalHarmonics`) into a third (``k``). Only
``l_a + l_b + l_k`` even survives, so features built from harmonics and these
products keep their natural parity ``(-1)^l`` and energies are invariant under
reflections as well as rotations. The ``sqrt(4 pi)`` makes the ``l = 0`` product
a plain dot product.

The integral is computed by a product quadrature (Gauss-Legendre in ``cos
theta``, uniform in ``phi``) that is exact for the polynomial degrees involved:
no tables, no symbolic algebra, any ``l``.
"""

import math

import numpy as np
import torch

from atomtrain.nn.spherical import SphericalHarmonics


def gaunt_tensor(l_max_a: int, l_max_b: int, l_max_out: int) -> torch.Tensor:
    """``(K_out, K_a, K_b)`` float64 tensor with ``K = (l_max + 1)^2``."""
    degree = l_max_a + l_max_b + l_max_out
    n_theta = degree // 2 + 2  # Gauss-Legendre is exact to degree 2n - 1
    n_phi = degree + 2  # a uniform grid is exact for frequencies below n
    z, weights = np.polynomial.legendre.leggauss(n_theta)
    phi = 2.0 * math.pi * np.arange(n_phi) / n_phi
    z_grid, phi_grid = np.meshgrid(z, phi, indexing="ij")
    s = np.sqrt(1.0 - z_grid**2)
    points = np.stack(
        [s * np.cos(phi_grid), s * np.sin(phi_grid), z_grid], axis=-1
    ).reshape(-1, 3)
    w = np.repeat(weights, n_phi) * (2.0 * math.pi / n_phi)
    l_max = max(l_max_a, l_max_b, l_max_out)
    harmonics = SphericalHarmonics(l_max)(torch.tensor(points, dtype=torch.float64))
    y = harmonics.numpy()
    k_a, k_b, k_out = (l_max_a + 1) ** 2, (l_max_b + 1) ** 2, (l_max_out + 1) ** 2
    g = np.einsum("p,pk,pa,pb->kab", w, y[:, :k_out], y[:, :k_a], y[:, :k_b])
    g *= math.sqrt(4.0 * math.pi)
    g[np.abs(g) < 1e-12] = 0.0
    return torch.tensor(g, dtype=torch.float64)


def degree_of_components(l_max: int) -> torch.Tensor:
    """The ``l`` of each of the ``(l_max + 1)^2`` components."""
    return torch.tensor([l for l in range(l_max + 1) for _ in range(2 * l + 1)])  # noqa: E741
