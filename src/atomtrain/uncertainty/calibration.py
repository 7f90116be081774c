"""Fit LLPR's ``alpha`` and ``varsigma`` on held-out data by minimising the
Gaussian negative log-likelihood.

For a given ``varsigma`` the best ``alpha^2`` has a closed form (the mean of
``error^2 / (x^T (C + varsigma I)^-1 x)``); ``varsigma`` is searched on a
logarithmic grid, which the eigendecomposition of ``C`` makes cheap, with the
one-standard-error rule (the least regularised ``varsigma`` whose NLL is
statistically as good as the best).
"""

from __future__ import annotations

import math

import torch

from atomtrain.uncertainty.llpr import Calibrated, HeldOut


def rigidities(covariance: torch.Tensor, features: torch.Tensor, grid: torch.Tensor):
    """``x^T (C + varsigma I)^-1 x`` for every row and every ``varsigma`` of
    ``grid``: ``(n_grid, n)``."""
    values, vectors = torch.linalg.eigh(covariance)
    projected = (features @ vectors).square()  # (n, F)
    return (projected @ (1.0 / (values.clamp(min=0.0).unsqueeze(1) + grid))).T


def nll_of(errors: torch.Tensor, variances: torch.Tensor) -> torch.Tensor:
    """Mean Gaussian NLL over rows and properties; ``variances (..., n, P)``."""
    variances = variances.clamp(min=1e-300)
    return 0.5 * (
        torch.log(2 * math.pi * variances) + errors.square() / variances
    ).mean(dim=(-1, -2))


def default_grid(covariance: torch.Tensor) -> torch.Tensor:
    """``varsigma`` from 1e-10 to 1e2 times the mean eigenvalue of ``C``."""
    mean = float(torch.diagonal(covariance).mean().clamp(min=1e-300))
    return mean * torch.logspace(-10, 2, 49, dtype=torch.float64)


def fit(covariance: torch.Tensor, data: HeldOut, target) -> Calibrated:
    """``alpha`` of least validation NLL for each ``varsigma`` of the grid,
    then the smallest ``varsigma`` whose NLL is within one standard error of
    the best: on a few dozen validation values the NLL is nearly flat in
    ``varsigma``, and the least regularised choice keeps what the features
    know about unfamiliar structures (a large ``varsigma`` flattens sigma to
    the feature norm). The NLL before (alpha 1 at the chosen ``varsigma``) is
    kept to show what calibration gained."""
    covariance = covariance.to(torch.float64)
    grid = default_grid(covariance).to(covariance.device)
    u = rigidities(covariance, data.features, grid).clamp(min=1e-300)  # (G, n)
    errors = data.errors  # (n, P)
    alpha2 = (errors.square().unsqueeze(0) / u.unsqueeze(2)).mean(dim=1)  # (G, P)
    variances = u.unsqueeze(2) * alpha2.unsqueeze(1)  # (G, n, P)
    per_value = 0.5 * (
        torch.log(2 * math.pi * variances) + errors.square() / variances
    ).mean(dim=2)  # (G, n)
    nll = per_value.mean(dim=1)
    best = int(torch.argmin(nll))
    spread = per_value[best].std() / math.sqrt(max(per_value.shape[1], 1))
    chosen = int(torch.nonzero(nll <= nll[best] + spread)[0])
    before = float(nll_of(errors, u[chosen].unsqueeze(1).expand_as(errors)))
    return Calibrated(
        target=target,
        covariance=covariance,
        regularizer=float(grid[chosen]),
        alpha=alpha2[chosen].sqrt(),
        nll_before=before,
        nll_after=float(nll[chosen]),
    )
