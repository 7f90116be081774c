"""Shallow ensembles trained with a proper scoring rule (Gaussian NLL).

After training, the last layer is replicated into ``n_members`` heads whose
weights are LLPR posterior draws, in antithetic pairs ``W +/- d_k`` (so the
members' mean stays the trained prediction exactly, and with it the forces),
and sigma is the members' spread: ``var = mean_k (x . d_k)^2``. The draws are
``d_k = V diag(sqrt(s)) z_k`` in the eigenbasis ``V`` of the training
covariance, with LLPR's ``s = alpha^2 / (lambda + varsigma)`` to start with;
the fine-tuning, body frozen, fits the variances ``s`` (one per direction)
by minimising the Gaussian NLL of the training errors: the ensemble learns
the spectrum of its posterior from the data instead of LLPR's two-parameter
form. The features ``x`` do not change when the body is frozen: one pass over
the training set computes them and every epoch is a product of small
matrices. A scale fitted on the validation set (closed form) corrects the
overconfidence of training errors, and the epoch of least validation NLL is
kept (0, the LLPR draws themselves, when fine-tuning does not help).

Fitting the draws ``d_k`` themselves (``F x n_members / 2`` numbers) was
tried first: on acetylacetone it fitted the training residuals and lost both
the held-out calibration and the growth of sigma away from the data; one
variance per direction generalises (see docs/uncertainty.md).

Energies per structure only: forces would need the gradient of every feature
with respect to positions, one backward pass per feature and structure.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from atomtrain.data.info import TargetInfo, display_name
from atomtrain.nn.direct_forces import is_direct_stress
from atomtrain.uncertainty.calibration import nll_of
from atomtrain.uncertainty.llpr import Calibrated, HeldOut
from atomtrain.uncertainty.module import TargetUncertainty


def member_variance(features: torch.Tensor, half: torch.Tensor) -> torch.Tensor:
    """``mean_k (x . d_k)^2`` ``(n, P)`` of rows ``x`` for half-shifts
    ``half`` ``(F, K, P)``: the variance of the members ``+/- d_k``."""
    n_features, k, p = half.shape
    shifts = features @ half.reshape(n_features, k * p)
    return shifts.reshape(-1, k, p).square().mean(dim=1)


def calibrated_nll(errors: torch.Tensor, variance: torch.Tensor):
    """The NLL of each value ``(n,)`` (averaged over properties) with the best
    scale per property (``a^2 = mean(e^2 / var)``), and that scale."""
    variance = variance.clamp(min=1e-300)
    scale2 = (errors.square() / variance).mean(dim=0)
    scaled = variance * scale2
    per_value = 0.5 * (torch.log(2 * math.pi * scaled) + errors.square() / scaled)
    return per_value.mean(dim=1), scale2.sqrt()


@dataclass
class ShallowEnsemble:
    """The fine-tuned members of one target and what the fine-tuning gained."""

    target: TargetInfo
    half: torch.Tensor  # (F, K, P) half-shifts of the weights
    scale: torch.Tensor  # (P,) fitted on the validation set
    nll_initial: float  # validation NLL of the LLPR draws (scale fitted)
    nll_after: float  # validation NLL of the kept epoch (scale fitted)
    epoch: int  # the epoch kept (0: the LLPR draws)

    @property
    def n_members(self) -> int:
        return 2 * self.half.shape[1]

    def member_shifts(self) -> torch.Tensor:
        """Columns ``p * n_members + m`` (``+d_k``, ``-d_k`` in turn), scaled."""
        half = (self.half * self.scale).permute(0, 2, 1)  # (F, P, K)
        pairs = torch.stack([half, -half], dim=3)
        return pairs.reshape(half.shape[0], -1)

    def head(self) -> TargetUncertainty:
        name = self.target.name
        property_name = "energy" if self.target.is_energy else display_name(name)
        return TargetUncertainty(
            name,
            property_name,
            torch.zeros((0, 0), dtype=torch.float64),
            torch.ones_like(self.scale),
            self.member_shifts(),
            self.target.rank,
            is_direct_stress(name),
            sigma_from_members=True,
        )


def fine_tune(
    llpr: Calibrated,
    train: HeldOut,
    validation: HeldOut,
    n_members: int,
    epochs: int,
    learning_rate: float = 0.03,
    seed: int = 0,
) -> ShallowEnsemble:
    """Members drawn from the calibrated LLPR posterior of ``llpr``: half-shifts
    ``d_k = V diag(sqrt(s)) z_k`` with ``V`` the eigenvectors of the training
    covariance, ``s = alpha^2 / (lambda + varsigma)`` and fixed standard
    normal ``z_k``. The variances ``s`` (one per direction and property) are
    then fitted to ``train`` by Adam on the Gaussian NLL (full batch,
    ``epochs`` steps), the members' scale to ``validation`` after each, and
    the epoch of least validation NLL is kept."""
    values, vectors = torch.linalg.eigh(llpr.covariance)
    prior = 1.0 / (values.clamp(min=0.0) + llpr.regularizer)  # (F,)
    start = prior.unsqueeze(1) * llpr.alpha.square().unsqueeze(0)  # (F, P)
    generator = torch.Generator().manual_seed(seed)
    draws = torch.randn(
        values.shape[0], n_members // 2, dtype=torch.float64, generator=generator
    ).to(values.device)
    log_variances = start.log().clone().requires_grad_(True)
    optimizer = torch.optim.Adam([log_variances], lr=learning_rate)

    def half_shifts() -> torch.Tensor:
        """``(F, K, P)``: the draws coloured by the current variances."""
        roots = (0.5 * log_variances).exp()  # (F, P)
        return vectors @ (draws.unsqueeze(2) * roots.unsqueeze(1)).flatten(1)

    n_features, k, p = values.shape[0], draws.shape[1], start.shape[1]
    history = []  # (validation NLL, half-shifts, scale) after each epoch
    for epoch in range(epochs + 1):
        if epoch > 0:
            optimizer.zero_grad()
            half = half_shifts().reshape(n_features, k, p)
            variance = member_variance(train.features, half)
            nll_of(train.errors, variance.clamp(min=1e-300)).backward()
            optimizer.step()
        with torch.no_grad():
            half = half_shifts().reshape(n_features, k, p)
            per_value, scale = calibrated_nll(
                validation.errors, member_variance(validation.features, half)
            )
        history.append((float(per_value.mean()), half, scale))
    best = min(range(len(history)), key=lambda i: history[i][0])
    nll, half, scale = history[best]
    return ShallowEnsemble(llpr.target, half, scale, history[0][0], nll, best)
