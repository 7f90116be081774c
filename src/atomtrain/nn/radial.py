"""Radial basis and envelope for message passing: smooth at the cutoff."""

import math

import torch


def polynomial_envelope(r: torch.Tensor, cutoff: float) -> torch.Tensor:
    """``1 - 28 x^6 + 48 x^7 - 21 x^8`` with ``x = r / cutoff``, zero beyond: the
    value and its first two derivatives vanish at the cutoff, so energies,
    forces and their derivatives stay continuous when an atom crosses it."""
    x = (r / cutoff).clamp(max=1.0)
    x6 = x**6
    return 1.0 - 28.0 * x6 + 48.0 * x6 * x - 21.0 * x6 * x * x


class BesselBasis(torch.nn.Module):
    """``sqrt(2 / rc) sin(n pi r / rc) / r`` for n = 1..count."""

    def __init__(self, cutoff: float, count: int):
        super().__init__()
        self.cutoff = cutoff
        self.prefactor = math.sqrt(2.0 / cutoff)
        frequencies = math.pi * torch.arange(1, count + 1) / cutoff
        self.register_buffer("frequencies", frequencies, persistent=False)

    def forward(self, r: torch.Tensor) -> torch.Tensor:
        r = r.unsqueeze(-1)
        return self.prefactor * torch.sin(self.frequencies.to(r.dtype) * r) / r
