"""Learning rate: linear warmup, then cosine or plateau decay; restorable state.

Progress through training is the fraction of ``num_epochs`` done or, with a
time budget (``max_time``), the fraction of the budget used when that is
larger: a run cut short by its budget still ends its decay (and starts its
stage two) in time, while warmup stays counted in steps.
"""

from __future__ import annotations

import math


class LearningRate:
    """Learning rate as a function of the optimiser step, the wall time used and
    the validation history."""

    def __init__(self, hypers: dict, steps_per_epoch: int):
        self.peak = hypers["learning_rate"]
        self.kind = hypers["scheduler"]
        self.min_factor = hypers["min_lr_factor"]
        self.patience = hypers["plateau_patience"]
        self.factor = hypers["plateau_factor"]
        self.warmup_steps = int(round(hypers["warmup_epochs"] * steps_per_epoch))
        self.total_steps = max(1, hypers["num_epochs"] * steps_per_epoch)
        self.max_time = float(hypers.get("max_time", 0.0))
        stage_two = hypers.get("stage_two") or {}
        self.stage_two_start = stage_two.get("start")
        self.stage_two_factor = stage_two.get("learning_rate_factor", 0.1)
        self.step_count = 0
        self.elapsed = 0.0  # seconds of training used, set by the loop
        self.warmup_elapsed = 0.0  # seconds used when warmup ended
        self.plateau_multiplier = 1.0
        self.best = math.inf
        self.bad_epochs = 0

    def progress(self) -> float:
        """Fraction of training done (1 at the end)."""
        fraction = self.step_count / self.total_steps
        if self.max_time > 0:
            fraction = max(fraction, self.elapsed / self.max_time)
        return fraction

    def in_stage_two(self) -> bool:
        return self.stage_two_start is not None and (
            self.progress() >= self.stage_two_start
        )

    def value(self) -> float:
        rate = self._scheduled()
        if self.in_stage_two():
            rate = min(rate, self.peak * self.stage_two_factor)
        return rate

    def _scheduled(self) -> float:
        step = self.step_count
        if step < self.warmup_steps:
            return self.peak * (0.01 + 0.99 * step / self.warmup_steps)
        if self.kind == "cosine":
            span = max(1, self.total_steps - self.warmup_steps)
            progress = min(1.0, (step - self.warmup_steps) / span)
            if self.max_time > 0:  # the decay spans the budget left after warmup
                left = max(1e-9, self.max_time - self.warmup_elapsed)
                used = (self.elapsed - self.warmup_elapsed) / left
                progress = max(progress, min(1.0, used))
            cosine = 0.5 * (1.0 + math.cos(math.pi * progress))
            return self.peak * (self.min_factor + (1.0 - self.min_factor) * cosine)
        return self.peak * self.plateau_multiplier

    def apply(self, optimizer) -> None:
        for group in optimizer.param_groups:
            group["lr"] = self.value()

    def step(self, elapsed: float = 0.0) -> None:
        """Count a step; ``elapsed`` is the training time used after it."""
        self.step_count += 1
        self.elapsed = elapsed
        if self.step_count == self.warmup_steps:
            self.warmup_elapsed = elapsed

    def end_epoch(self, validation_loss: float) -> None:
        if self.kind != "plateau" or self.step_count < self.warmup_steps:
            return
        if validation_loss < self.best * (1 - 1e-4):
            self.best, self.bad_epochs = validation_loss, 0
            return
        self.bad_epochs += 1
        if self.bad_epochs > self.patience:
            self.plateau_multiplier *= self.factor
            self.bad_epochs = 0

    # what a restart needs, with its type and its value in checkpoints older
    # than the field (None: always present)
    _STATE = {
        "step_count": (int, None),
        "plateau_multiplier": (float, None),
        "best": (float, None),
        "bad_epochs": (int, None),
        "elapsed": (float, 0.0),
        "warmup_elapsed": (float, 0.0),
    }

    def state_dict(self) -> dict:
        return {name: getattr(self, name) for name in self._STATE}

    def load_state_dict(self, state: dict) -> None:
        for name, (kind, default) in self._STATE.items():
            value = state[name] if default is None else state.get(name, default)
            setattr(self, name, kind(value))
