"""Learning rate: linear warmup, then cosine or plateau decay; restorable state."""

from __future__ import annotations

import math


class LearningRate:
    """Learning rate as a function of the optimiser step and validation history."""

    def __init__(self, hypers: dict, steps_per_epoch: int):
        self.peak = hypers["learning_rate"]
        self.kind = hypers["scheduler"]
        self.min_factor = hypers["min_lr_factor"]
        self.patience = hypers["plateau_patience"]
        self.factor = hypers["plateau_factor"]
        self.warmup_steps = int(round(hypers["warmup_epochs"] * steps_per_epoch))
        self.total_steps = max(1, hypers["num_epochs"] * steps_per_epoch)
        self.step_count = 0
        self.plateau_multiplier = 1.0
        self.best = math.inf
        self.bad_epochs = 0

    def value(self) -> float:
        step = self.step_count
        if step < self.warmup_steps:
            return self.peak * (0.01 + 0.99 * step / self.warmup_steps)
        if self.kind == "cosine":
            span = max(1, self.total_steps - self.warmup_steps)
            progress = min(1.0, (step - self.warmup_steps) / span)
            cosine = 0.5 * (1.0 + math.cos(math.pi * progress))
            return self.peak * (self.min_factor + (1.0 - self.min_factor) * cosine)
        return self.peak * self.plateau_multiplier

    def apply(self, optimizer) -> None:
        for group in optimizer.param_groups:
            group["lr"] = self.value()

    def step(self) -> None:
        self.step_count += 1

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

    def state_dict(self) -> dict:
        return {
            "step_count": self.step_count,
            "plateau_multiplier": self.plateau_multiplier,
            "best": self.best,
            "bad_epochs": self.bad_epochs,
        }

    def load_state_dict(self, state: dict) -> None:
        self.step_count = int(state["step_count"])
        self.plateau_multiplier = float(state["plateau_multiplier"])
        self.best = float(state["best"])
        self.bad_epochs = int(state["bad_epochs"])
