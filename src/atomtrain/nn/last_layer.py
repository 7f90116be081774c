"""Helpers for the architectures' last-layer features (the contract point that
uncertainty needs, see atomtrain.uncertainty): a linear layer ``y = x W^T + b``,
scaled by the target's scale, is linear in the features ``[x, 1]`` with weights
``[W^T; b] * scale``."""

from typing import Optional

import torch


def with_bias_column(x: torch.Tensor) -> torch.Tensor:
    """``[x, 1]``: the bias of a linear layer becomes one more weight."""
    ones = torch.ones((x.shape[0], 1), dtype=x.dtype, device=x.device)
    return torch.cat([x, ones], dim=1)


def linear_weights(
    weight: torch.Tensor, bias: Optional[torch.Tensor], scale: torch.Tensor
) -> torch.Tensor:
    """``[W^T; b] * scale`` ``(n_in [+ 1], n_out)``: the weights of
    ``with_bias_column`` features (no bias row for a bias-free layer)."""
    rows = weight.t()
    if bias is not None:
        rows = torch.cat([rows, bias.unsqueeze(0)], dim=0)
    return rows * scale.unsqueeze(0)


def per_element_features(x: torch.Tensor, type_index: torch.Tensor, n_types: int):
    """Features of per-element linear layers: each atom's ``[x, 1]`` placed in
    the block of its element, zeros elsewhere ``(n_atoms, n_types * (n + 1))``."""
    extended = with_bias_column(x)
    one_hot = torch.nn.functional.one_hot(type_index, n_types).to(x.dtype)
    return (one_hot.unsqueeze(2) * extended.unsqueeze(1)).reshape(x.shape[0], -1)
