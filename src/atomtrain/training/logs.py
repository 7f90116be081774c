"""The per-epoch log line and the CSV file every run writes."""

from __future__ import annotations

import csv
import io
import logging
import os

from atomtrain.training.files import atomic_write_text


logger = logging.getLogger("atomtrain")


class CsvLog:
    """``train.csv``: one row per logged epoch, rewritten atomically each time so
    that a crash never leaves half a row. Rows past ``completed_epochs`` (logged
    by a run that died before its next checkpoint) are dropped on restart."""

    def __init__(self, path: str, completed_epochs: int = 0):
        self.path = path
        self.rows: list[dict] = []
        if os.path.exists(path):
            with open(path, newline="") as file:
                self.rows = [
                    row
                    for row in csv.DictReader(file)
                    if int(row.get("epoch") or 0) <= completed_epochs
                ]

    def write(self, row: dict) -> None:
        self.rows.append({k: _fmt(v) for k, v in row.items()})
        columns = list(dict.fromkeys(c for r in self.rows for c in r))
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, columns)
        writer.writeheader()
        writer.writerows(self.rows)
        atomic_write_text(self.path, buffer.getvalue())


def _fmt(value) -> str:
    return f"{value:.6g}" if isinstance(value, float) else str(value)


def epoch_line(epoch: int, lr: float, train: dict, val: dict) -> str:
    parts = [f"Epoch {epoch:4d}", f"lr {lr:.3e}"]
    parts += [f"train {k}: {v:.4g}" for k, v in train.items()]
    parts += [f"val {k}: {v:.4g}" for k, v in val.items()]
    return " | ".join(parts)
