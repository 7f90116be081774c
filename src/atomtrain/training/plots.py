"""PNG figures a person looks at after a run: learning curves and parity plots.

matplotlib is optional (extra ``plots``): without it the plots are skipped with
one line saying how to get them, never an error. Figures are drawn with the Agg
canvas directly, without pyplot, so no global backend is changed in the
process that imported atomtrain.
"""

from __future__ import annotations

import csv
import logging
import math
import os
from typing import List, Tuple

import numpy as np

from atomtrain.data.info import DatasetInfo
from atomtrain.evaluation.engine import Evaluation
from atomtrain.evaluation.tables import metric_parts
from atomtrain.training.files import atomic_write
from atomtrain.training.metrics import Metrics


logger = logging.getLogger("atomtrain")
PANEL = 4.0  # inches


def have_matplotlib() -> bool:
    """Whether plots can be drawn; logs how to install matplotlib if not."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        logger.info(
            "plots skipped: matplotlib is not installed "
            "(pip install 'atomtrain[plots]')"
        )
        return False
    return True


def _figure(n_panels: int, title: str):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    columns = min(3, n_panels)
    rows = math.ceil(n_panels / columns)
    figure = Figure(figsize=(PANEL * columns, PANEL * rows + 0.4), layout="tight")
    FigureCanvasAgg(figure)
    axes = figure.subplots(rows, columns, squeeze=False).ravel()
    for unused in axes[n_panels:]:
        unused.set_visible(False)
    figure.suptitle(title)
    return figure, axes


def _save(figure, path: str) -> None:
    atomic_write(path, lambda file: figure.savefig(file, format="png", dpi=100))
    logger.info(f"plot written to {path}")


# ------------------------------------------------------------- learning curves
def _read_rows(csv_path: str) -> List[dict]:
    if not os.path.exists(csv_path):
        return []
    with open(csv_path, newline="") as file:
        return list(csv.DictReader(file))


def _column(rows: List[dict], key: str) -> Tuple[np.ndarray, np.ndarray]:
    epochs, values = [], []
    for row in rows:
        try:
            epoch, value = int(row["epoch"]), float(row.get(key) or "nan")
        except (KeyError, ValueError):
            continue
        if math.isfinite(value):
            epochs.append(epoch)
            values.append(value)
    return np.array(epochs), np.array(values)


def write_learning_curves(csv_path: str, path: str) -> bool:
    """Loss and every metric of ``train.csv``, train and validation, on a log
    scale, plus the learning rate; False when the file has no rows."""
    from matplotlib.ticker import MaxNLocator

    rows = _read_rows(csv_path)
    if not rows:
        return False
    metrics: List[str] = []
    for column in rows[0]:
        split, _, metric = column.partition(" ")
        if split in ("train", "val") and metric and metric not in metrics:
            metrics.append(metric)
    panels = metrics + (["learning_rate"] if "learning_rate" in rows[0] else [])
    figure, axes = _figure(len(panels), "learning curves")
    for ax, metric in zip(axes, panels):
        columns = (
            [("learning rate", "learning_rate")]
            if metric == "learning_rate"
            else [("train", f"train {metric}"), ("validation", f"val {metric}")]
        )
        positive = True
        for label, column in columns:
            epochs, values = _column(rows, column)
            if len(values):
                ax.plot(epochs, values, marker="." if len(values) < 30 else None,
                        label=label)  # fmt: skip
                positive = positive and bool((values > 0).all())
        if positive:
            _log_scale(ax)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_title(metric.replace("_", " "))
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        if metric != "learning_rate":
            ax.legend()
    _save(figure, path)
    return True


def _log_scale(ax) -> None:
    """Log y axis with plain tick labels (1240, 0.001), not 1.24x10^3."""
    from matplotlib.ticker import LogFormatter

    ax.set_yscale("log")
    ax.yaxis.set_major_formatter(LogFormatter())
    ax.yaxis.set_minor_formatter(LogFormatter(labelOnlyBase=False))


# ---------------------------------------------------------------- parity plots
def _axis_unit(info: DatasetInfo, name: str, kind: str) -> str:
    target = info.targets[name]
    if kind == "forces":
        return "eV/Å"
    if kind == "stress":
        return "eV/Å³"
    if target.is_energy:
        return "eV" if target.per_atom else "eV/atom"
    return target.unit


def _errors_title(evaluation: Evaluation, name: str, kind: str) -> str:
    """The panel's label with its exact MAE and RMSE (over every labelled
    structure, not only the plotted sample)."""
    metrics = Metrics(evaluation.info.targets)
    label = metrics.label(name, kind)
    stats = {}
    for key, value in evaluation.metrics.items():
        key_label, stat, unit = metric_parts(key)
        if key_label == label:
            stats[stat] = f"{value:.4g} {unit}"
    return f"{label}\nMAE {stats.get('MAE')}, RMSE {stats.get('RMSE')}"


def write_parity_plot(path: str, evaluation: Evaluation, split: str) -> bool:
    """Predicted against reference for every target, forces and stress of one
    split (a bounded random sample of the points), exact MAE and RMSE in each
    title; False when nothing has a reference."""
    from matplotlib.ticker import MaxNLocator

    pairs = evaluation.sample.pairs()
    if not pairs:
        logger.info(f"no reference values in {split}: no parity plot")
        return False
    title = f"{split} ({evaluation.n_structures} structures)"
    figure, axes = _figure(len(pairs), title)
    for ax, ((name, kind), (predicted, reference)) in zip(axes, pairs.items()):
        ax.set_title(_errors_title(evaluation, name, kind), fontsize=10)
        ax.scatter(reference, predicted, s=6, alpha=0.5, linewidths=0)
        low = float(min(reference.min(), predicted.min()))
        high = float(max(reference.max(), predicted.max()))
        ax.plot([low, high], [low, high], color="black", linewidth=0.8)
        unit = _axis_unit(evaluation.info, name, kind)
        ax.set_xlabel(f"reference ({unit})" if unit else "reference")
        ax.set_ylabel(f"predicted ({unit})" if unit else "predicted")
        ax.set_aspect("equal", adjustable="datalim")
        ax.xaxis.set_major_locator(MaxNLocator(4))
        ax.yaxis.set_major_locator(MaxNLocator(4))
        ax.ticklabel_format(useOffset=False)  # an offset label hides the title
        ax.grid(alpha=0.3)
    _save(figure, path)
    return True
