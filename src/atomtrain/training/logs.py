"""The per-epoch log line and the CSV file every run writes."""

from __future__ import annotations

import csv
import logging
import os


logger = logging.getLogger("atomtrain")


class CsvLog:
    """Append one row per logged epoch to ``train.csv`` (header written once)."""

    def __init__(self, path: str):
        self.path = path
        self.columns: list[str] | None = None
        if os.path.exists(path):
            with open(path, newline="") as file:
                header = next(csv.reader(file), None)
            self.columns = header

    def write(self, row: dict) -> None:
        if self.columns is None:
            self.columns = list(row)
            with open(self.path, "w", newline="") as file:
                csv.writer(file).writerow(self.columns)
        with open(self.path, "a", newline="") as file:
            csv.writer(file).writerow([_fmt(row.get(c, "")) for c in self.columns])
            file.flush()
            os.fsync(file.fileno())


def _fmt(value) -> str:
    return f"{value:.6g}" if isinstance(value, float) else str(value)


def epoch_line(epoch: int, lr: float, train: dict, val: dict) -> str:
    parts = [f"Epoch {epoch:4d}", f"lr {lr:.3e}"]
    parts += [f"train {k}: {v:.4g}" for k, v in train.items()]
    parts += [f"val {k}: {v:.4g}" for k, v in val.items()]
    return " | ".join(parts)
