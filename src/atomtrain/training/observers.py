"""What the training loop tells the outside world while it runs.

Progress bars, TensorBoard or Weights & Biases and end-of-run plots all watch the
one shared loop through this interface, so the loop itself never grows a branch
per reporting tool.
"""

from __future__ import annotations

from typing import List


class TrainingObserver:
    """Receives the loop's events; every method is optional (a no-op here)."""

    def epoch_started(self, epoch: int, n_steps: int, first_step: int) -> None:
        """``epoch`` is 1-based; ``first_step`` > 0 when resuming mid-epoch."""

    def step_done(self, loss: float) -> None:
        """After each optimiser step (also after a skipped non-finite step)."""

    def validation_started(self, n_batches: int) -> None:
        """Before the validation batches of an epoch."""

    def validation_step_done(self) -> None:
        """After each validation batch."""

    def epoch_done(self, row: dict) -> None:
        """After a logged epoch, with the row written to ``train.csv``."""

    def close(self) -> None:
        """At the end of training, also when it stops early or on a signal."""


class Observers(TrainingObserver):
    """Fans each event out to a list of observers."""

    def __init__(self, observers: List[TrainingObserver] | None = None):
        self.observers = list(observers or [])

    def _each(self, event: str, *args) -> None:
        for observer in self.observers:
            getattr(observer, event)(*args)

    def epoch_started(self, epoch: int, n_steps: int, first_step: int) -> None:
        self._each("epoch_started", epoch, n_steps, first_step)

    def step_done(self, loss: float) -> None:
        self._each("step_done", loss)

    def validation_started(self, n_batches: int) -> None:
        self._each("validation_started", n_batches)

    def validation_step_done(self) -> None:
        self._each("validation_step_done")

    def epoch_done(self, row: dict) -> None:
        self._each("epoch_done", row)

    def close(self) -> None:
        self._each("close")
