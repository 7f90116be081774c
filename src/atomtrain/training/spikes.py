"""Loss-spike guard: a step whose batch loss is thousands of times the recent
ones is skipped instead of applied.

Such spikes come from a model whose predictions blow up on one batch (a
many-body product of large features, say). Applied, their clipped gradient
still moves every weight and fills Adam's second moments, and the validation
error settles higher for the rest of a long run (measured on ACE-MP's
accuracy runs, docs/benchmarks.md). Skipping the step leaves the model as it
was before the batch. The reference is a running mean of accepted losses, so
the decision is the same on every process (the batch loss is global).
"""

from __future__ import annotations

import math
from typing import Dict


class SpikeGuard:
    """Tells whether a batch loss is a spike: more than ``factor`` times the
    running mean of the accepted losses (``factor`` 0 never tells).

    The first ``warmup`` losses after a reset only build the mean. After
    ``patience`` spikes in a row the guard takes the level as changed for
    good (a restart with other data, say), accepts the loss and starts its
    mean again from it, so training cannot stall. A burst from a model that
    blows up on many batches at once is then applied too: the guard only
    removes isolated spikes (docs/benchmarks.md)."""

    def __init__(
        self, factor: float, decay: float = 0.98, warmup: int = 20, patience: int = 5
    ):
        self.factor, self.decay = factor, decay
        self.warmup, self.patience = warmup, patience
        self.mean = 0.0
        self.seen = 0  # accepted losses since the last reset
        self.in_a_row = 0  # spikes since the last accepted loss
        self.skipped = 0  # spikes over the whole run

    def is_spike(self, value: float) -> bool:
        """Whether to skip the step of ``value``; records it otherwise."""
        if self.factor <= 0 or not math.isfinite(value):
            return False
        # a mean of zero (a perfect fit) has no scale to judge a spike by
        if self.seen >= self.warmup and 0 < self.factor * self.mean < value:
            self.in_a_row += 1
            if self.in_a_row <= self.patience:
                self.skipped += 1
                return True
            self.reset()
        self.in_a_row = 0
        self.seen += 1
        # the mean of the losses so far while warming up, then a running mean
        weight = max(1.0 - self.decay, 1.0 / self.seen)
        self.mean += weight * (value - self.mean)
        return False

    def reset(self) -> None:
        """Forget the recent losses (the loss function has changed)."""
        self.mean, self.seen, self.in_a_row = 0.0, 0, 0

    def state_dict(self) -> Dict[str, float]:
        return {
            "mean": self.mean,
            "seen": self.seen,
            "in_a_row": self.in_a_row,
            "skipped": self.skipped,
        }

    def load_state_dict(self, state: Dict[str, float]) -> None:
        self.mean = float(state["mean"])
        self.seen, self.in_a_row = int(state["seen"]), int(state["in_a_row"])
        self.skipped = int(state["skipped"])
