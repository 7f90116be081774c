"""Last-layer prediction rigidity (LLPR, Bigi et al. 2024,
https://arxiv.org/abs/2403.02251): the Bayesian posterior of a model's last
linear layer, with the rest of the network held fixed.

With features ``x`` summed like the target (per structure for energies), a
Gaussian prior of variance ``s_w^2`` on the last-layer weights and Gaussian
noise of variance ``s_n^2``, the posterior variance of a prediction is
``alpha^2 x^T (C + varsigma I)^-1 x`` with ``C = X^T X`` over the training
set, ``alpha^2 = s_n^2`` and ``varsigma = s_n^2 / s_w^2``. ``alpha`` and
``varsigma`` are fitted on held-out data by minimising the Gaussian negative
log-likelihood (:mod:`atomtrain.uncertainty.calibration`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Iterable, List

import torch

from atomtrain.data.info import TargetInfo, display_name
from atomtrain.data.structure import Structure
from atomtrain.data.systems import compute_neighbors, make_system
from atomtrain.nn.direct_forces import is_direct_stress
from atomtrain.training.evaluate import predict, references
from atomtrain.uncertainty.module import (
    TargetUncertainty,
    UncertaintyModel,
    sample_features,
)


def summed_features(
    model, structures: List[Structure], target: TargetInfo, dtype, device
) -> torch.Tensor:
    """Last-layer features of ``structures`` in float64, one row per
    structure (summed over atoms) or per atom for per-atom targets, and per
    Cartesian component (``(n * 3**rank, F)``); no gradients."""
    requests = model.requested_neighbor_lists()
    systems = [make_system(s, requests, dtype, device)[0] for s in structures]
    with torch.no_grad():
        atomic = model.last_layer_features(systems, target.name)
        features = sample_features(
            atomic, systems, None, target.per_atom, is_direct_stress(target.name)
        )[0]
    return features.to(torch.float64).reshape(-1, features.shape[-1])


def batched(structures: List[Structure], size: int) -> Iterable[List[Structure]]:
    for start in range(0, len(structures), size):
        yield list(structures[start : start + size])


def feature_covariance(
    model, structures, target: TargetInfo, dtype, device, batch_size: int = 16
) -> torch.Tensor:
    """``C = X^T X`` over ``structures`` (float64, one pass, no gradients)."""
    compute_neighbors(structures, model.requested_neighbor_lists())
    covariance = None
    for batch in batched(structures, batch_size):
        x = summed_features(model, batch, target, dtype, device)
        update = x.T @ x
        covariance = update if covariance is None else covariance + update
    if covariance is None:
        raise ValueError("no structures to accumulate the covariance on")
    return covariance


@dataclass
class HeldOut:
    """Features, errors (prediction - reference) of one target on held-out data."""

    features: torch.Tensor  # (n, n_features), float64
    errors: torch.Tensor  # (n, n_properties), float64


def held_out(
    model, structures, target: TargetInfo, dtype, device, batch_size: int = 16
) -> HeldOut:
    """Features and prediction errors on the labelled ``structures``."""
    requests = model.requested_neighbor_lists()
    compute_neighbors(structures, requests)
    call = lambda systems, outputs: model(systems, outputs, None)  # noqa: E731
    features, errors = [], []
    targets = {target.name: target}
    for batch in batched(structures, batch_size):
        prediction = predict(
            call, batch, requests, targets, dtype, device, forces=False, stress=False
        )
        reference = references(batch, targets, dtype, device)
        if target.name not in reference.values:
            continue
        rows = reference.rows[(target.name, "values")]
        x = summed_features(model, batch, target, dtype, device)
        x = x.reshape(-1, target.components, x.shape[1])[rows].reshape(-1, x.shape[1])
        error = prediction.values[target.name][rows] - reference.values[target.name]
        features.append(x)
        # one row per Cartesian component, as the features
        errors.append(error.to(torch.float64).reshape(x.shape[0], -1))
    if not features:
        raise ValueError(f"no structure has a reference value of '{target.name}'")
    return HeldOut(torch.cat(features), torch.cat(errors))


def inverse_covariance(covariance: torch.Tensor, regularizer: float) -> torch.Tensor:
    """``(C + varsigma I)^-1`` through the eigendecomposition (symmetric)."""
    values, vectors = torch.linalg.eigh(covariance)
    return (vectors / (values.clamp(min=0.0) + regularizer)) @ vectors.T


def posterior_shifts(
    inverse: torch.Tensor, alpha: torch.Tensor, n_members: int, seed: int
) -> torch.Tensor:
    """Changes of the last-layer weights of ``n_members`` members drawn from
    the posterior ``N(0, alpha^2 (C + varsigma I)^-1)``, in antithetic pairs
    (``+d``, ``-d``) so that the members' mean is the prediction exactly.
    Columns ``p * n_members + m``."""
    if n_members % 2:
        raise ValueError("the number of ensemble members must be even")
    values, vectors = torch.linalg.eigh(inverse)
    root = vectors * values.clamp(min=0.0).sqrt()
    generator = torch.Generator().manual_seed(seed)
    columns = []
    for a in alpha.tolist():
        draws = torch.randn(
            inverse.shape[0], n_members // 2, dtype=torch.float64, generator=generator
        )
        half = root @ draws.to(root.device) * a
        columns.append(torch.stack([half, -half], dim=2).reshape(inverse.shape[0], -1))
    return torch.cat(columns, dim=1)


@dataclass
class Calibrated:
    """The fitted LLPR of one target."""

    target: TargetInfo
    covariance: torch.Tensor
    regularizer: float
    alpha: torch.Tensor  # (n_properties,)
    nll_before: float
    nll_after: float

    def head(self, n_members: int, seed: int = 0) -> TargetUncertainty:
        inverse = inverse_covariance(self.covariance, self.regularizer)
        name = self.target.name
        property_name = "energy" if self.target.is_energy else display_name(name)
        return TargetUncertainty(
            name,
            property_name,
            inverse,
            self.alpha,
            posterior_shifts(inverse, self.alpha, n_members, seed),
            self.target.rank,
            is_direct_stress(name),
        )


def wrap(
    model, calibrated: Dict[str, Calibrated], n_members: int, seed: int = 0
) -> UncertaintyModel:
    """``model`` with the uncertainty outputs of every calibrated target."""
    heads = {name: c.head(n_members, seed) for name, c in calibrated.items()}
    return UncertaintyModel(model, heads)
