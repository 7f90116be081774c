"""Metrics as people read them: one aligned line per quantity (and split)."""

from __future__ import annotations

import logging
import re
from typing import Dict, List


logger = logging.getLogger("atomtrain")
_METRIC = re.compile(r"^(?P<label>.*) (?P<stat>RMSE|MAE) \((?P<unit>.*)\)$")


def metric_parts(key: str) -> tuple[str, str, str]:
    """``"forces RMSE (meV/Å)"`` -> ``("forces", "RMSE", "meV/Å")``."""
    match = _METRIC.match(key)
    return match.groups() if match else (key, "", "")


def metrics_table(reports: Dict[str, Dict[str, float]]) -> List[str]:
    """Aligned lines of MAE and RMSE per quantity, with a split column when
    ``reports`` (split name -> ``Metrics.report()``) has more than one split."""
    rows: Dict[tuple, Dict[str, str]] = {}
    for split, report in reports.items():
        for key, value in report.items():
            label, stat, unit = metric_parts(key)
            rows.setdefault((label, split, unit), {})[stat] = f"{value:.4g}"
    if not rows:
        return []
    header = ["quantity", "split", "MAE", "RMSE", "unit"]
    lines = [
        [label, split, stats.get("MAE", "-"), stats.get("RMSE", "-"), unit]
        for (label, split, unit), stats in rows.items()
    ]
    if len(reports) == 1:
        header.pop(1)
        lines = [line[:1] + line[2:] for line in lines]
    widths = [max(len(r[i]) for r in [header, *lines]) for i in range(len(header))]
    numeric = {len(header) - 3, len(header) - 2}  # MAE and RMSE, right-aligned

    def fmt(row: List[str]) -> str:
        cells = [
            cell.rjust(width) if i in numeric else cell.ljust(width)
            for i, (cell, width) in enumerate(zip(row, widths))
        ]
        return "  ".join(cells).rstrip()

    return [fmt(header)] + [fmt(line) for line in lines]


def log_metrics(title: str, reports: Dict[str, Dict[str, float]]) -> None:
    lines = metrics_table(reports)
    if lines:
        logger.info(f"{title}:")
        for line in lines:
            logger.info(f"  {line}")
