"""Low-rank adaptation (LoRA) for fine-tuning any architecture.

Every ``torch.nn.Linear`` of the model is wrapped so that its weight becomes
``W + (alpha / rank) * B @ A`` with a trainable low-rank pair ``A, B`` (``B``
starts at zero, so training starts from the pretrained model) and everything
else frozen. Checkpoints hold the merged weights under the usual keys, so
export, eval and later fine-tuning see a plain model of the architecture; the
unmerged state rides along for exact restarts.
"""

from __future__ import annotations

import math
from typing import Dict

import torch


ADAPTER_SUFFIXES = (".lora_a", ".lora_b")


class LoraLinear(torch.nn.Module):
    """A frozen ``Linear`` plus a trainable rank-``rank`` update."""

    def __init__(self, base: torch.nn.Linear, rank: int, alpha: float):
        super().__init__()
        self.base = base
        self.scaling = alpha / rank
        weight = base.weight
        self.lora_a = torch.nn.Parameter(
            torch.empty(
                rank, base.in_features, dtype=weight.dtype, device=weight.device
            )
        )
        self.lora_b = torch.nn.Parameter(
            torch.zeros(
                base.out_features, rank, dtype=weight.dtype, device=weight.device
            )
        )
        torch.nn.init.kaiming_uniform_(self.lora_a, a=math.sqrt(5))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.base(x) + (x @ self.lora_a.T) @ self.lora_b.T * self.scaling


def attach(model: torch.nn.Module, rank: int, alpha: float) -> int:
    """Wrap every Linear of ``model`` in place and freeze all other weights;
    returns the number of wrapped layers."""
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    targets = [
        (parent, name, child)
        for parent in model.modules()
        for name, child in parent.named_children()
        if isinstance(child, torch.nn.Linear)
    ]
    for parent, name, child in targets:
        setattr(parent, name, LoraLinear(child, rank, alpha))
    return len(targets)


def merged_state_dict(
    state: Dict[str, torch.Tensor], scaling: float
) -> Dict[str, torch.Tensor]:
    """The state dict of the plain model: ``X.base.weight`` plus its adapters
    become ``X.weight``; entries of unwrapped modules pass through unchanged."""
    merged: Dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if key.endswith(ADAPTER_SUFFIXES):
            continue
        if key.endswith(".base.weight"):
            prefix = key[: -len(".base.weight")]
            if prefix + ".lora_a" in state:
                delta = state[prefix + ".lora_b"] @ state[prefix + ".lora_a"]
                merged[prefix + ".weight"] = value + scaling * delta
                continue
        if (
            key.endswith(".base.bias")
            and key[: -len(".base.bias")] + ".lora_a" in state
        ):
            merged[key[: -len(".base.bias")] + ".bias"] = value
            continue
        merged[key] = value
    return merged


def scaling_of(hypers: dict) -> float:
    lora = hypers["finetune"]["lora"]
    return lora["alpha"] / lora["rank"]
