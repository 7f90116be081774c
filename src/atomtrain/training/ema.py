"""Exponential moving average of the weights, used for validation and export."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Dict

import torch


class WeightAverage:
    """``average = decay * average + (1 - decay) * weights`` after every step."""

    def __init__(self, model: torch.nn.Module, decay: float):
        self.decay = decay
        self.average: Dict[str, torch.Tensor] = {
            k: v.detach().clone() for k, v in model.state_dict().items()
        }

    @torch.no_grad()
    def update(self, model: torch.nn.Module) -> None:
        for name, value in model.state_dict().items():
            if value.is_floating_point():
                self.average[name].lerp_(value, 1.0 - self.decay)
            else:
                self.average[name].copy_(value)

    @contextmanager
    def swapped_in(self, model: torch.nn.Module):
        """Run the block with the averaged weights, then restore the raw ones."""
        raw = {k: v.detach().clone() for k, v in model.state_dict().items()}
        model.load_state_dict(self.average)
        try:
            yield
        finally:
            model.load_state_dict(raw)
