"""Real spherical harmonics in plain torch, and their gradients.

Why not sphericart: its TorchScript operator has no autograd kernel when an
exported model loads it from ``extensions/`` (as ASE, LAMMPS or i-PI do), so
forces of exported models came out silently wrong. Plain torch differentiates
to any order, runs on any device and needs no compiled extension.

``harmonics_with_polynomial_gradient`` and ``tangential`` give values and exact
first derivatives without autograd, for the training path of SOAP
(``atomtrain.nn.soap_density``).
"""

import math
from typing import List, Tuple

import torch


def _normalisation(l_max: int) -> torch.Tensor:
    norms: List[float] = []
    for l in range(l_max + 1):  # noqa: E741
        for m in range(-l, l + 1):
            a = abs(m)
            k = math.sqrt(
                (2 * l + 1)
                / (4 * math.pi)
                * math.factorial(l - a)
                / math.factorial(l + a)
            )
            norms.append(k if m == 0 else math.sqrt(2.0) * k)
    return torch.tensor(norms, dtype=torch.float64)


def _tables(
    unit: torch.Tensor, l_max: int
) -> Tuple[List[torch.Tensor], List[torch.Tensor], List[List[torch.Tensor]]]:
    """``cos(m phi) sin^m(theta)``, ``sin(m phi) sin^m(theta)`` (polynomials in x,
    y) and ``Q[l][m] = d^m P_l / dz^m`` (Legendre polynomials in z), so that
    ``Y_lm ~ Q[l][|m|] * (cos or sin)[|m|]`` and ``d Q[l][m] / dz = Q[l][m + 1]``."""
    x, y, z = unit[:, 0], unit[:, 1], unit[:, 2]
    cos_m: List[torch.Tensor] = [torch.ones_like(x)]
    sin_m: List[torch.Tensor] = [torch.zeros_like(x)]
    for m in range(1, l_max + 1):
        cos_m.append(x * cos_m[m - 1] - y * sin_m[m - 1])
        sin_m.append(x * sin_m[m - 1] + y * cos_m[m - 1])
    legendre: List[List[torch.Tensor]] = []
    for l in range(l_max + 1):  # noqa: E741
        row: List[torch.Tensor] = []
        for m in range(l + 1):
            if m == l:
                value = torch.full_like(z, _double_factorial(2 * l - 1))
            elif m == l - 1:
                value = (2 * l - 1) * z * legendre[l - 1][m]
            else:
                value = (
                    (2 * l - 1) * z * legendre[l - 1][m]
                    - (l + m - 1) * legendre[l - 2][m]
                ) / (l - m)
            row.append(value)
        legendre.append(row)
    return cos_m, sin_m, legendre


class SphericalHarmonics(torch.nn.Module):
    """Orthonormal real spherical harmonics of the direction of each vector,
    ordered ``(l, m)`` with ``m = -l..l``; output shape ``(n, (l_max + 1)^2)``."""

    def __init__(self, l_max: int):
        super().__init__()
        self.l_max = l_max
        self.register_buffer("norms", _normalisation(l_max), persistent=False)

    def forward(self, vectors: torch.Tensor) -> torch.Tensor:
        unit = vectors / torch.linalg.vector_norm(vectors, dim=1, keepdim=True)
        cos_m, sin_m, legendre = _tables(unit, self.l_max)
        columns: List[torch.Tensor] = []
        for l in range(self.l_max + 1):  # noqa: E741
            for m in range(-l, l + 1):
                if m < 0:
                    columns.append(legendre[l][-m] * sin_m[-m])
                elif m == 0:
                    columns.append(legendre[l][0])
                else:
                    columns.append(legendre[l][m] * cos_m[m])
        return torch.stack(columns, dim=1) * self.norms.to(vectors.dtype)


def tangential(
    gradient: torch.Tensor, unit: torch.Tensor, distances: torch.Tensor
) -> torch.Tensor:
    """The chain rule through ``v / |v|`` for a gradient ``(..., 3)`` with respect
    to the unit vector: remove the part along ``unit``, divide by ``|v|``. Linear,
    so callers that contract the gradient apply it to the (smaller) result."""
    shape = (-1,) + (1,) * (gradient.dim() - 2) + (3,)
    unit = unit.reshape(shape)
    along = (gradient * unit).sum(-1, keepdim=True)
    return (gradient - along * unit) / distances.reshape(shape[:-1] + (1,))


@torch.no_grad()
def harmonics_with_polynomial_gradient(
    unit: torch.Tensor, l_max: int
) -> Tuple[torch.Tensor, torch.Tensor]:
    """Values ``(n, K)`` and the gradient ``(n, K, 3)`` of the harmonics'
    polynomial form with respect to the components of ``unit`` taken as free;
    :func:`tangential` turns it into the gradient with respect to the vector."""
    cos_m, sin_m, legendre = _tables(unit, l_max)
    norms = _normalisation(l_max).tolist()
    zero = torch.zeros_like(unit[:, 0])
    # d/dx (x + iy)^a = a (x + iy)^(a-1), d/dy = i a (x + iy)^(a-1)
    cos_x = [a * cos_m[a - 1] if a > 0 else zero for a in range(l_max + 1)]
    sin_x = [a * sin_m[a - 1] if a > 0 else zero for a in range(l_max + 1)]
    values: List[torch.Tensor] = []
    grads: List[torch.Tensor] = []
    k = 0
    for l in range(l_max + 1):  # noqa: E741
        for m in range(-l, l + 1):
            a = abs(m)
            q = legendre[l][a] * norms[k]
            dq = legendre[l][a + 1] * norms[k] if a < l else zero
            k += 1
            if m == 0:
                values.append(q)
                grads += [zero, zero, dq]
            elif m > 0:
                values.append(q * cos_m[a])
                grads += [q * cos_x[a], -q * sin_x[a], dq * cos_m[a]]
            else:
                values.append(q * sin_m[a])
                grads += [q * sin_x[a], q * cos_x[a], dq * sin_m[a]]
    gradient = torch.stack(grads, dim=1).reshape(-1, len(values), 3)
    return torch.stack(values, dim=1), gradient


def _double_factorial(n: int) -> float:
    result = 1.0
    while n > 1:
        result *= n
        n -= 2
    return result


# Cartesian tensors in the real-harmonic basis above (metatensor's convention:
# ``Y(R r) = D(R) Y(r)`` with the same real Wigner matrices). ``l = 1`` is
# ``(y, z, x)``; ``l = 2`` uses the orthonormal symmetric traceless matrices
# whose quadratic forms ``r^T B_m r`` are proportional (one positive constant)
# to ``Y_2m(r)``; ``l = 0`` of a rank-2 tensor is its trace over sqrt(3). The
# maps are orthonormal, so norms are kept and inverses are transposes.


def cartesian_to_l1(vectors: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """A Cartesian vector (x, y, z along ``dim``) as its ``l = 1`` components
    ``(y, z, x)``: ``m = -1, 0, 1``."""
    index = torch.tensor([1, 2, 0], device=vectors.device)
    return torch.index_select(vectors, dim, index)


def l1_to_cartesian(components: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """Inverse of :func:`cartesian_to_l1`."""
    index = torch.tensor([2, 0, 1], device=components.device)
    return torch.index_select(components, dim, index)


def l2_basis(dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """``(5, 3, 3)``: the matrices ``B_m``, ``m = -2..2``."""
    s2, s6 = 2.0**-0.5, 6.0**-0.5
    basis = torch.zeros((5, 3, 3), dtype=dtype, device=device)
    basis[0, 0, 1] = basis[0, 1, 0] = s2  # xy
    basis[1, 1, 2] = basis[1, 2, 1] = s2  # yz
    basis[2, 0, 0] = basis[2, 1, 1] = -s6  # 2zz - xx - yy
    basis[2, 2, 2] = 2.0 * s6
    basis[3, 0, 2] = basis[3, 2, 0] = s2  # xz
    basis[4, 0, 0], basis[4, 1, 1] = s2, -s2  # xx - yy
    return basis


def symmetric_to_l2(tensors: torch.Tensor) -> torch.Tensor:
    """The ``l = 2`` components ``(..., 5)`` of rank-2 tensors ``(..., 3, 3)``."""
    basis = l2_basis(tensors.dtype, tensors.device)
    return torch.einsum("...xy,mxy->...m", tensors, basis)


def symmetric_to_l0(tensors: torch.Tensor) -> torch.Tensor:
    """The ``l = 0`` component ``(..., 1)`` of rank-2 tensors ``(..., 3, 3)``."""
    trace = tensors.diagonal(dim1=-2, dim2=-1).sum(-1, keepdim=True)
    return trace / math.sqrt(3.0)


def symmetric_from_l0_l2(l0: torch.Tensor, l2: torch.Tensor) -> torch.Tensor:
    """The symmetric tensor ``(..., 3, 3)`` with components ``l0`` ``(..., 1)``
    and ``l2`` ``(..., 5)``."""
    basis = l2_basis(l2.dtype, l2.device)
    eye = torch.eye(3, dtype=l2.dtype, device=l2.device) / math.sqrt(3.0)
    return torch.einsum("...m,mxy->...xy", l2, basis) + l0.unsqueeze(-1) * eye
