"""Smooth cutoff functions: energies and forces stay continuous at the cutoff."""

import math

import torch


def cosine_cutoff(r: torch.Tensor, cutoff: float, width: float) -> torch.Tensor:
    """1 below ``cutoff - width``, 0 beyond ``cutoff``, a cosine step in between
    (continuous value and first derivative)."""
    x = ((r - (cutoff - width)) / width).clamp(0.0, 1.0)
    return 0.5 * (1.0 + torch.cos(math.pi * x))


def cosine_cutoff_slope(r: torch.Tensor, cutoff: float, width: float) -> torch.Tensor:
    """Derivative of :func:`cosine_cutoff` with respect to ``r`` (zero for a
    sharp cutoff, ``width = 0``)."""
    if width <= 0:
        return torch.zeros_like(r)
    x = ((r - (cutoff - width)) / width).clamp(0.0, 1.0)
    return -0.5 * math.pi / width * torch.sin(math.pi * x)
