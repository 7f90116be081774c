"""Real spherical harmonics in plain torch.

Why not sphericart: its TorchScript operator has no autograd kernel when an
exported model loads it from ``extensions/`` (as ASE, LAMMPS or i-PI do), so
forces of exported models came out silently wrong. Plain torch differentiates
to any order, runs on any device and needs no compiled extension.
"""

import math
from typing import List

import torch


class SphericalHarmonics(torch.nn.Module):
    """Orthonormal real spherical harmonics of the direction of each vector,
    ordered ``(l, m)`` with ``m = -l..l``; output shape ``(n, (l_max + 1)^2)``."""

    def __init__(self, l_max: int):
        super().__init__()
        self.l_max = l_max
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
        self.register_buffer(
            "norms", torch.tensor(norms, dtype=torch.float64), persistent=False
        )

    def forward(self, vectors: torch.Tensor) -> torch.Tensor:
        unit = vectors / torch.linalg.vector_norm(vectors, dim=1, keepdim=True)
        x, y, z = unit[:, 0], unit[:, 1], unit[:, 2]
        # cos(m phi) sin^m(theta) and sin(m phi) sin^m(theta) as polynomials
        cos_m: List[torch.Tensor] = [torch.ones_like(x)]
        sin_m: List[torch.Tensor] = [torch.zeros_like(x)]
        for m in range(1, self.l_max + 1):
            cos_m.append(x * cos_m[m - 1] - y * sin_m[m - 1])
            sin_m.append(x * sin_m[m - 1] + y * cos_m[m - 1])
        # associated Legendre polynomials divided by sin^m(theta): Q[l][m]
        legendre: List[List[torch.Tensor]] = []
        for l in range(self.l_max + 1):  # noqa: E741
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


def _double_factorial(n: int) -> float:
    result = 1.0
    while n > 1:
        result *= n
        n -= 2
    return result
