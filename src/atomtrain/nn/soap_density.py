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
from atomtrain.nn.spherical import harmonics_with_gradient


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
    """Density in pseudo-species channels, ``(atoms, pseudo * n, K)``, with each
    atom's neighbours padded to a common count so that the sum over neighbours
    is one batched matrix product: forward and backward then never build a
    ``(pairs, n * K)`` tensor (the scatter formulation needs four of them, whose
    fresh pages cost a third of an exported model's call on a small cell).
    ``harmonics`` are those of ``vectors``, computed by the caller."""
    n_atoms = type_index.shape[0]
    n_pairs = centers.shape[0]
    distances = torch.linalg.vector_norm(vectors, dim=1)
    radial = radial_functions(distances, frequencies, cutoff, width)
    # each pair's slot in the padded rows of both its atoms: (owner, rank among
    # the owner's pairs); atom i sees (r, Y) and atom j sees (r, (-1)^l Y)
    owner = torch.cat([centers, neighbors])
    order = torch.argsort(owner, stable=True)
    counts = torch.bincount(owner, minlength=n_atoms)
    k_max = int(counts.max()) if n_pairs > 0 else 0
    first = torch.cumsum(counts, 0) - counts
    sorted_owner = owner.index_select(0, order)
    rank = torch.arange(2 * n_pairs, device=owner.device) - first[sorted_owner]
    slots = torch.empty_like(owner).index_copy_(0, order, sorted_owner * k_max + rank)
    forward_slots, reverse_slots = slots[:n_pairs], slots[n_pairs:]

    channels = species_mixing.shape[1] * radial.shape[1]
    mixing_j = species_mixing.index_select(0, type_index.index_select(0, neighbors))
    mixing_i = species_mixing.index_select(0, type_index.index_select(0, centers))
    radial_rows = torch.zeros(
        (n_atoms * k_max, channels), dtype=radial.dtype, device=radial.device
    )
    radial_rows.index_copy_(0, forward_slots, _outer(mixing_j, radial))
    radial_rows.index_copy_(0, reverse_slots, _outer(mixing_i, radial))
    angular_rows = torch.zeros(
        (n_atoms * k_max, harmonics.shape[1]), dtype=radial.dtype, device=radial.device
    )
    angular_rows.index_copy_(0, forward_slots, harmonics)
    angular_rows.index_copy_(0, reverse_slots, harmonics * parity)
    return torch.bmm(
        radial_rows.reshape(n_atoms, k_max, channels).transpose(1, 2),
        angular_rows.reshape(n_atoms, k_max, harmonics.shape[1]),
    )


def _outer(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Row-wise outer products, flattened: ``(n, p), (n, q) -> (n, p * q)``."""
    return (a.unsqueeze(2) * b.unsqueeze(1)).reshape(
        a.shape[0], a.shape[1] * b.shape[1]
    )


def density_first_order(
    vectors: torch.Tensor,
    slots: torch.Tensor,
    reverse_slots: torch.Tensor,
    n_rows: int,
    frequencies: torch.Tensor,
    cutoff: float,
    width: float,
    l_max: int,
    parity: torch.Tensor,
) -> torch.Tensor:
    """Same values as :func:`mixed_density_autograd` before the species mixing
    (rows ordered element, atom), differentiable once with
    respect to ``vectors`` (and its backward once more, with respect to the
    incoming gradient)."""
    return _FirstOrderDensity.apply(
        vectors, slots, reverse_slots, n_rows, frequencies, cutoff, width, l_max, parity
    )


def _scatter_pairs(
    edge: torch.Tensor,
    slots: torch.Tensor,
    reverse_slots: torch.Tensor,
    parity: torch.Tensor,
    n_rows: int,
) -> torch.Tensor:
    """Sum of ``edge`` into rows ``slots`` and of ``parity * edge`` into rows
    ``reverse_slots``, the parity applied to the (small) sums, not per pair."""
    forward = torch.zeros((n_rows, edge.shape[1]), dtype=edge.dtype, device=edge.device)
    reverse = torch.zeros_like(forward)
    forward.index_add_(0, slots, edge)
    reverse.index_add_(0, reverse_slots, edge)
    return forward.add_(reverse.mul_(parity))


class _FirstOrderDensity(torch.autograd.Function):
    @staticmethod
    def forward(ctx, vectors, slots, reverse_slots, n_rows, frequencies, cutoff,
                width, l_max, parity):  # fmt: skip
        distances = torch.linalg.vector_norm(vectors, dim=1)
        unit = vectors / distances.unsqueeze(1)
        radial, radial_slope = _radial_with_derivative(
            distances, frequencies.to(vectors.dtype), cutoff, width
        )
        harmonics, harmonics_grad = harmonics_with_gradient(unit, distances, l_max)
        edge = (radial.unsqueeze(2) * harmonics.unsqueeze(1)).reshape(
            vectors.shape[0], radial.shape[1] * harmonics.shape[1]
        )
        parity_ = parity.to(vectors.dtype).repeat(radial.shape[1])
        density = _scatter_pairs(edge, slots, reverse_slots, parity_, n_rows)
        ctx.save_for_backward(
            vectors, slots, reverse_slots, parity_, unit, radial, radial_slope,
            harmonics, harmonics_grad,
        )  # fmt: skip
        return density

    @staticmethod
    def backward(ctx, grad_density):
        vectors, *saved = ctx.saved_tensors
        grad_vectors = _DensityGradient.apply(grad_density, *saved)
        if torch.is_grad_enabled():  # create_graph: refuse second derivatives
            grad_vectors = grad_vectors * _NoCurvature.apply(vectors)
        return grad_vectors, None, None, None, None, None, None, None, None


class _DensityGradient(torch.autograd.Function):
    """Gradient with respect to the pair vectors from the gradient with respect
    to the density; linear in the latter, with an explicit backward (autograd's
    own would build outer products as slow batched matrix products)."""

    @staticmethod
    def forward(ctx, grad_density, slots, reverse_slots, parity, unit, radial,
                radial_slope, harmonics, harmonics_grad):  # fmt: skip
        n_pairs, n_radial = radial.shape
        grad_edge = grad_density.index_select(0, slots)
        grad_edge += (grad_density * parity).index_select(0, reverse_slots)
        grad_edge = grad_edge.reshape(n_pairs, n_radial, harmonics.shape[1])
        # edge = R_n(r) Y_k(v): d/dv = R'_n Y_k v/r + R_n dY_k/dv
        along_radial = torch.bmm(grad_edge, harmonics.unsqueeze(2)).squeeze(2)
        along_harmonics = torch.bmm(radial.unsqueeze(1), grad_edge)
        grad_vectors = torch.bmm(along_harmonics, harmonics_grad).squeeze(1)
        grad_vectors += (along_radial * radial_slope).sum(1, keepdim=True) * unit
        ctx.n_rows = grad_density.shape[0]
        ctx.save_for_backward(
            slots, reverse_slots, parity, unit, radial, radial_slope, harmonics,
            harmonics_grad,
        )  # fmt: skip
        return grad_vectors

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_grad):
        (slots, reverse_slots, parity, unit, radial, radial_slope, harmonics,
         harmonics_grad) = ctx.saved_tensors  # fmt: skip
        along_unit = (grad_grad * unit).sum(1, keepdim=True)
        along_harmonics = torch.bmm(harmonics_grad, grad_grad.unsqueeze(2))
        edge = (radial_slope * along_unit).unsqueeze(2) * harmonics.unsqueeze(1)
        edge += radial.unsqueeze(2) * along_harmonics.transpose(1, 2)
        edge = edge.reshape(edge.shape[0], radial.shape[1] * harmonics.shape[1])
        result = _scatter_pairs(edge, slots, reverse_slots, parity, ctx.n_rows)
        return result, None, None, None, None, None, None, None, None


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
