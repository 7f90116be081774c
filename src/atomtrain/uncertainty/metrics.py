"""How good an uncertainty is: figures computed from errors and predicted sigmas.

All take flat arrays of errors (prediction - reference) and sigmas of the same
length and return a float; they are used by ``atomtrain eval``, the
calibration and the benchmark alike.
"""

from __future__ import annotations

import math

import torch


def _flat(errors, sigmas) -> tuple[torch.Tensor, torch.Tensor]:
    e = torch.as_tensor(errors, dtype=torch.float64).reshape(-1)
    s = torch.as_tensor(sigmas, dtype=torch.float64).reshape(-1)
    if e.shape != s.shape:
        raise ValueError(f"{e.numel()} errors but {s.numel()} sigmas")
    return e, s


def gaussian_nll(errors, sigmas) -> float:
    """Mean negative log-likelihood of the errors under ``N(0, sigma^2)``."""
    e, s = _flat(errors, sigmas)
    variance = s.square().clamp(min=1e-300)
    return float(
        0.5 * (torch.log(2 * math.pi * variance) + e.square() / variance).mean()
    )


def rms_z(errors, sigmas) -> float:
    """RMS of error / sigma: 1 when the sigmas are calibrated, above 1 when
    they are too small."""
    e, s = _flat(errors, sigmas)
    return float((e / s).square().mean().sqrt())


def _ranks(x: torch.Tensor) -> torch.Tensor:
    """Ranks 0..n-1, ties given their average rank."""
    order = torch.argsort(x, stable=True)
    ranks = torch.empty_like(x)
    ranks[order] = torch.arange(x.numel(), dtype=x.dtype)
    values, inverse = torch.unique(x, return_inverse=True)
    if values.numel() < x.numel():  # average the ranks of ties
        sums = torch.zeros_like(values).index_add(0, inverse, ranks)
        counts = torch.zeros_like(values).index_add(0, inverse, torch.ones_like(x))
        ranks = (sums / counts)[inverse]
    return ranks


def spearman(errors, sigmas) -> float:
    """Spearman rank correlation between |error| and sigma (1: the larger the
    sigma, the larger the error, always)."""
    e, s = _flat(errors, sigmas)
    a, b = _ranks(e.abs()), _ranks(s)
    a, b = a - a.mean(), b - b.mean()
    denominator = (a.square().sum() * b.square().sum()).sqrt()
    return float((a * b).sum() / denominator) if denominator > 0 else float("nan")


def miscalibration_area(errors, sigmas, n_levels: int = 100) -> float:
    """Area between the observed and expected fraction of errors inside the
    central Gaussian interval of each confidence level (0 when calibrated,
    0.5 at worst)."""
    e, s = _flat(errors, sigmas)
    z = (e / s).abs()
    levels = torch.linspace(0.0, 1.0, n_levels + 1, dtype=torch.float64)
    # the central interval holding a fraction p of N(0, 1) is |z| <= erfinv(p) sqrt 2
    bounds = torch.special.erfinv(levels.clamp(max=1 - 1e-12)) * math.sqrt(2.0)
    observed = (z.unsqueeze(0) <= bounds.unsqueeze(1)).to(torch.float64).mean(dim=1)
    return float(torch.trapezoid((observed - levels).abs(), levels))


def calibration_report(errors, sigmas) -> dict[str, float]:
    """The four figures ``atomtrain eval`` prints."""
    return {
        "Spearman(|error|, sigma)": spearman(errors, sigmas),
        "RMS(error/sigma)": rms_z(errors, sigmas),
        "miscalibration area": miscalibration_area(errors, sigmas),
        "NLL": gaussian_nll(errors, sigmas),
    }
