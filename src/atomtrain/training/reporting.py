"""Reporting tools attached to a training run (filled in by the reporting work)."""

from __future__ import annotations

from typing import List

from atomtrain.training.observers import TrainingObserver


def make_observers(options: dict, output_dir: str) -> List[TrainingObserver]:
    """Observers asked for by ``options`` (progress bars, loggers)."""
    return []


def report_after_training(
    model, splits: dict, dataset_info, dtype, device, options: dict, output_dir: str
) -> None:
    """Plots and summaries made once the exported model exists."""
