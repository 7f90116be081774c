"""Parity plot with error bars: prediction against reference, each point with
its predicted sigma, beside the distribution of error/sigma (a calibrated
model's follows the unit Gaussian drawn over it)."""

from __future__ import annotations

import math

from atomtrain.data.info import display_name
from atomtrain.uncertainty.scoring import UncertaintyScores


MAX_POINTS = 5000


def write_error_bar_plot(path: str, scores: UncertaintyScores) -> bool:
    """Draw every target with labelled values; False when there is none."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    names = [n for n in scores.outputs if scores.arrays(n) is not None]
    if not names:
        return False
    figure, axes = plt.subplots(len(names), 2, figsize=(9, 4 * len(names)))
    axes = np.atleast_2d(axes)
    for row, name in zip(axes, names):
        errors, sigmas, references = (a.numpy() for a in scores.arrays(name))
        step = max(1, len(errors) // MAX_POINTS)
        keep = slice(None, None, step)
        predicted = references + errors
        unit = scores.info.targets[name].unit
        row[0].errorbar(
            references[keep], predicted[keep], yerr=sigmas[keep], fmt=".",
            markersize=3, elinewidth=0.8, alpha=0.6,
        )  # fmt: skip
        low, high = float(references.min()), float(references.max())
        row[0].plot([low, high], [low, high], "k--", linewidth=0.8)
        row[0].set_xlabel(f"reference {display_name(name)} ({unit})")
        row[0].set_ylabel(f"predicted ({unit}), bars: sigma")
        z = errors / sigmas
        row[1].hist(z, bins=40, density=True, alpha=0.7)
        grid = np.linspace(-4, 4, 200)
        row[1].plot(grid, np.exp(-0.5 * grid**2) / math.sqrt(2 * math.pi), "k-")
        row[1].set_xlabel("error / sigma")
        row[1].set_xlim(-6, 6)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return True
