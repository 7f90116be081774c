"""Shallow ensembles trained with a proper scoring rule (Gaussian NLL).

After training, the last layer is replicated into ``n_members`` heads whose
weights start from LLPR posterior draws, in antithetic pairs ``W +/- d_k``
(so the members' mean stays the trained prediction exactly, and with it the
forces). The half-shifts ``d_k`` are then fine-tuned with the body frozen by
minimising the Gaussian NLL of the training errors under the members'
variance ``var = mean_k (x . d_k)^2``: the ensemble learns a covariance of the
last-layer weights (of rank ``n_members / 2``) from the data, instead of
LLPR's fixed ``alpha^2 (C + varsigma I)^-1``. The features ``x`` do not change
when the body is frozen: one pass over the training set computes them and
every epoch is a product of small matrices. The epoch with the lowest
validation NLL is kept, and a last scale fitted on the validation set
(closed form) corrects the overconfidence of training errors.

Energies per structure only: forces would need the gradient of every feature
with respect to positions, one backward pass per feature and structure.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from atomtrain.data.info import TargetInfo, display_name
from atomtrain.nn.direct_forces import is_direct_stress
from atomtrain.uncertainty.calibration import nll_of
from atomtrain.uncertainty.llpr import (
    Calibrated,
    HeldOut,
    inverse_covariance,
    posterior_shifts,
)
from atomtrain.uncertainty.module import TargetUncertainty


def member_variance(features: torch.Tensor, half: torch.Tensor) -> torch.Tensor:
    """``mean_k (x . d_k)^2`` ``(n, P)`` of rows ``x`` for half-shifts
    ``half`` ``(F, K, P)``: the variance of the members ``+/- d_k``."""
    n_features, k, p = half.shape
    shifts = features @ half.reshape(n_features, k * p)
    return shifts.reshape(-1, k, p).square().mean(dim=1)


def calibrated_nll(errors: torch.Tensor, variance: torch.Tensor):
    """The NLL with the best scale per property (``a^2 = mean(e^2 / var)``)
    and that scale."""
    variance = variance.clamp(min=1e-300)
    scale2 = (errors.square() / variance).mean(dim=0)
    return float(nll_of(errors, variance * scale2)), scale2.sqrt()


@dataclass
class ShallowEnsemble:
    """The fine-tuned members of one target and what the fine-tuning gained."""

    target: TargetInfo
    half: torch.Tensor  # (F, K, P) half-shifts of the weights
    scale: torch.Tensor  # (P,) fitted on the validation set
    nll_initial: float  # validation NLL of the LLPR draws (scale fitted)
    nll_after: float  # validation NLL of the kept epoch (scale fitted)
    best_epoch: int

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
    """Members drawn from the calibrated LLPR posterior of ``llpr``, their
    half-shifts fitted to ``train`` by Adam on the Gaussian NLL (full batch,
    ``epochs`` steps), the epoch of least validation NLL kept."""
    inverse = inverse_covariance(llpr.covariance, llpr.regularizer)
    shifts = posterior_shifts(inverse, llpr.alpha, n_members, seed)
    n_features, n_properties = shifts.shape[0], llpr.alpha.numel()
    start = shifts.reshape(n_features, n_properties, n_members)[:, :, 0::2]
    start = start.permute(0, 2, 1).contiguous()  # (F, K, P)
    # Adam steps relative to the size of the draws
    unit = start.square().mean().sqrt().clamp(min=1e-300)
    weights = (start / unit).clone().requires_grad_(True)
    optimizer = torch.optim.Adam([weights], lr=learning_rate)
    nll_initial, scale = calibrated_nll(
        validation.errors, member_variance(validation.features, start)
    )
    best = (nll_initial, start, scale, 0)
    for epoch in range(1, epochs + 1):
        optimizer.zero_grad()
        variance = member_variance(train.features, weights * unit)
        loss = nll_of(train.errors, variance.clamp(min=1e-300))
        loss.backward()
        optimizer.step()
        with torch.no_grad():
            half = weights * unit
            nll, scale = calibrated_nll(
                validation.errors, member_variance(validation.features, half)
            )
        if nll < best[0]:
            best = (nll, half.detach().clone(), scale, epoch)
    return ShallowEnsemble(llpr.target, best[1], best[2], nll_initial, best[0], best[3])
