"""Neighbour density of SOAP from a half neighbour list, two ways.

``mixed_density_autograd`` is plain torch (TorchScript, any order of
derivative): the exported model uses it, with each atom's neighbours padded so
that the sum over them is one batched matrix product. ``density_first_order``
is the path of the in-memory model (training and validation): values and first
derivatives are computed without an autograd graph, and the backward pass is a
handful of batched contractions that autograd can itself differentiate with
respect to the incoming gradient. That is all a force or stress loss needs (the
second pass of training differentiates forces with respect to weights, never
twice with respect to positions), and it replaces hundreds of small autograd
nodes per pair with about ten: SOAP-BPNN trains about twice as fast. Asking it
for a second derivative with respect to positions raises an error instead of
returning a wrong (zero) curvature.

Each pair ``(i, j)`` of the half list feeds both densities: atom ``i`` sees
``r_ij`` and atom ``j`` sees ``-r_ij``, whose harmonics are ``(-1)^l Y_lm``, so
radial functions and harmonics are computed once per pair.
"""

from typing import Tuple

import torch

from atomtrain.nn.cutoff import cosine_cutoff, cosine_cutoff_slope
from atomtrain.nn.spherical import harmonics_with_polynomial_gradient, tangential


def radial_functions(
    distances: torch.Tensor, frequencies: torch.Tensor, cutoff: float, width: float
) -> torch.Tensor:
    """``sin(k_n r) / r`` times a smooth cosine switch, shape ``(pairs, n)``."""
    r = distances.unsqueeze(1)
    return torch.sin(r * frequencies) / r * cosine_cutoff(r, cutoff, width)


def _radial_with_derivative(
    distances: torch.Tensor, frequencies: torch.Tensor, cutoff: float, width: float
) -> Tuple[torch.Tensor, torch.Tensor]:
    r = distances.unsqueeze(1)
    kr = r * frequencies
    sine, cosine = torch.sin(kr) / r, torch.cos(kr)
    switch = cosine_cutoff(r, cutoff, width)
    switch_slope = cosine_cutoff_slope(r, cutoff, width)
    values = sine * switch
    slopes = (frequencies * cosine - sine) / r * switch + sine * switch_slope
    return values, slopes


def mixed_density_autograd(
    vectors: torch.Tensor,
    centers: torch.Tensor,
    neighbors: torch.Tensor,
    type_index: torch.Tensor,
    species_mixing: torch.Tensor,
    frequencies: torch.Tensor,
    cutoff: float,
    width: float,
    harmonics: torch.Tensor,
    parity: torch.Tensor,
) -> torch.Tensor:
    """Density in pseudo-species channels, ``(atoms, pseudo * n, K)``, with the
    species mixing inside the padded radial rows; ``harmonics`` are those of
    ``vectors``, computed by the caller."""
    n_atoms = type_index.shape[0]
    distances = torch.linalg.vector_norm(vectors, dim=1)
    radial = radial_functions(distances, frequencies, cutoff, width)
    forward_slots, reverse_slots, k_max = padded_slots(centers, neighbors, n_atoms)
    mixing_j = species_mixing.index_select(0, type_index.index_select(0, neighbors))
    mixing_i = species_mixing.index_select(0, type_index.index_select(0, centers))
    radial_rows = _padded(
        _outer(mixing_j, radial), _outer(mixing_i, radial),
        forward_slots, reverse_slots, n_atoms, k_max,
    )  # fmt: skip
    angular_rows = _padded(
        harmonics, harmonics * parity, forward_slots, reverse_slots, n_atoms, k_max
    )
    return torch.bmm(radial_rows.transpose(1, 2), angular_rows)


def padded_slots(
    rows: torch.Tensor, reverse_rows: torch.Tensor, n_rows: int
) -> Tuple[torch.Tensor, torch.Tensor, int]:
    """Where each pair goes in a padded ``(n_rows, k_max)`` layout, for the row
    it feeds directly (``rows``) and the row that sees its mirror image
    (``reverse_rows``): slot = row * k_max + rank of the pair within its row."""
    owner = torch.cat([rows, reverse_rows])
    order = torch.argsort(owner, stable=True)
    counts = torch.bincount(owner, minlength=n_rows)
    k_max = int(counts.max()) if owner.shape[0] > 0 else 0
    first = torch.cumsum(counts, 0) - counts
    sorted_owner = owner.index_select(0, order)
    rank = torch.arange(owner.shape[0], device=owner.device) - first[sorted_owner]
    slots = torch.empty_like(owner).index_copy_(0, order, sorted_owner * k_max + rank)
    return slots[: rows.shape[0]], slots[rows.shape[0] :], k_max


def _padded(
    values: torch.Tensor,
    reverse_values: torch.Tensor,
    slots: torch.Tensor,
    reverse_slots: torch.Tensor,
    n_rows: int,
    k_max: int,
) -> torch.Tensor:
    """``(n_rows, k_max, width)``: each pair's ``values`` at its slot and its
    ``reverse_values`` at its reverse slot, zeros in the padding."""
    padded = torch.zeros(
        (n_rows * k_max, values.shape[1]), dtype=values.dtype, device=values.device
    )
    padded.index_copy_(0, slots, values)
    padded.index_copy_(0, reverse_slots, reverse_values)
    return padded.reshape(n_rows, k_max, values.shape[1])


def _outer(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Row-wise outer products, flattened: ``(n, p), (n, q) -> (n, p * q)``."""
    return (a.unsqueeze(2) * b.unsqueeze(1)).reshape(
        a.shape[0], a.shape[1] * b.shape[1]
    )


def density_first_order(
    vectors: torch.Tensor,
    rows: torch.Tensor,
    reverse_rows: torch.Tensor,
    n_rows: int,
    frequencies: torch.Tensor,
    cutoff: float,
    width: float,
    l_max: int,
    parity: torch.Tensor,
) -> torch.Tensor:
    """Density ``(n_rows, n * K)``: pair ``p`` adds its expansion to row
    ``rows[p]`` and its mirror image to row ``reverse_rows[p]``; differentiable
    once with respect to ``vectors`` (and its backward once more, with respect to
    the incoming gradient)."""
    return _FirstOrderDensity.apply(
        vectors, rows, reverse_rows, n_rows, frequencies, cutoff, width, l_max, parity
    )


class _FirstOrderDensity(torch.autograd.Function):
    @staticmethod
    def forward(ctx, vectors, rows, reverse_rows, n_rows, frequencies, cutoff,
                width, l_max, parity):  # fmt: skip
        distances = torch.linalg.vector_norm(vectors, dim=1)
        unit = vectors / distances.unsqueeze(1)
        radial, radial_slope = _radial_with_derivative(
            distances, frequencies.to(vectors.dtype), cutoff, width
        )
        harmonics, harmonics_grad = harmonics_with_polynomial_gradient(unit, l_max)
        parity = parity.to(vectors.dtype)
        slots, reverse_slots, k_max = padded_slots(rows, reverse_rows, n_rows)
        padded_radial = _padded(radial, radial, slots, reverse_slots, n_rows, k_max)
        padded_angular = _padded(
            harmonics, harmonics * parity, slots, reverse_slots, n_rows, k_max
        )
        density = torch.bmm(padded_radial.transpose(1, 2), padded_angular)
        ctx.save_for_backward(
            vectors, slots, reverse_slots, parity, unit, distances, radial_slope,
            harmonics_grad, padded_radial, padded_angular,
        )  # fmt: skip
        return density.reshape(n_rows, radial.shape[1] * harmonics.shape[1])

    @staticmethod
    def backward(ctx, grad_density):
        vectors, *saved = ctx.saved_tensors
        grad_vectors = _DensityGradient.apply(grad_density, *saved)
        if torch.is_grad_enabled():  # create_graph: refuse second derivatives
            grad_vectors = grad_vectors * _NoCurvature.apply(vectors)
        return grad_vectors, None, None, None, None, None, None, None, None


class _DensityGradient(torch.autograd.Function):
    """Gradient with respect to the pair vectors from the gradient with respect
    to the density; linear in the latter, with an explicit backward. Both are
    batched products over the padded rows, then gathers of narrow per-pair rows
    (no ``(pairs, n * K)`` tensor)."""

    @staticmethod
    def forward(ctx, grad_density, slots, reverse_slots, parity, unit, distances,
                radial_slope, harmonics_grad, padded_radial,
                padded_angular):  # fmt: skip
        n_rows, k_max, n_radial = padded_radial.shape
        n_harmonics = padded_angular.shape[2]
        grad = grad_density.reshape(n_rows, n_radial, n_harmonics)
        # density = R^T A per row: d/dR = A G^T, d/dA = R G, per padded slot
        to_radial = torch.bmm(padded_angular, grad.transpose(1, 2))
        to_radial = to_radial.reshape(n_rows * k_max, n_radial)
        to_angular = torch.bmm(padded_radial, grad).reshape(n_rows * k_max, n_harmonics)
        along_radial = to_radial[slots] + to_radial[reverse_slots]
        along_harmonics = to_angular[slots] + to_angular[reverse_slots] * parity
        # R_n(r) Y_k(v): d/dv = R'_n Y_k v/r + R_n dY_k/dv
        grad_vectors = torch.bmm(along_harmonics.unsqueeze(1), harmonics_grad)
        grad_vectors = tangential(grad_vectors.squeeze(1), unit, distances)
        grad_vectors += (along_radial * radial_slope).sum(1, keepdim=True) * unit
        ctx.save_for_backward(
            slots, reverse_slots, parity, unit, distances, radial_slope,
            harmonics_grad, padded_radial, padded_angular,
        )  # fmt: skip
        return grad_vectors

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_grad):
        (slots, reverse_slots, parity, unit, distances, radial_slope, harmonics_grad,
         padded_radial, padded_angular) = ctx.saved_tensors  # fmt: skip
        n_rows, k_max = padded_radial.shape[0], padded_radial.shape[1]
        # grad_vectors . grad_grad is linear in the density gradient through
        # these per-pair coefficients of along_radial and along_harmonics
        radial_weight = radial_slope * (grad_grad * unit).sum(1, keepdim=True)
        tangent = tangential(grad_grad, unit, distances)  # self-adjoint projection
        angular_weight = torch.bmm(harmonics_grad, tangent.unsqueeze(2)).squeeze(2)
        radial_weight = _padded(
            radial_weight, radial_weight, slots, reverse_slots, n_rows, k_max
        )
        angular_weight = _padded(
            angular_weight, angular_weight * parity, slots, reverse_slots, n_rows, k_max
        )
        result = torch.bmm(radial_weight.transpose(1, 2), padded_angular)
        result.baddbmm_(padded_radial.transpose(1, 2), angular_weight)
        result = result.reshape(n_rows, result.shape[1] * result.shape[2])
        return result, None, None, None, None, None, None, None, None, None


class _NoCurvature(torch.autograd.Function):
    """A constant one that depends on ``vectors`` only to catch second
    derivatives with respect to them, which the first-order path lacks."""

    @staticmethod
    def forward(ctx, vectors):
        return torch.ones(1, dtype=vectors.dtype, device=vectors.device)

    @staticmethod
    def backward(ctx, grad):
        raise RuntimeError(
            "second derivatives with respect to positions or strain are not "
            "available from an in-memory SOAP-BPNN model (it computes first "
            "derivatives only, which is all a force or stress loss needs). Use the "
            "exported model (model.export(), or 'atomtrain export') for exact "
            "derivatives of any order, or pass the weights to backward(inputs=...) "
            "when only their gradients are wanted."
        )
