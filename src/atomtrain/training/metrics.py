"""RMSE and MAE per target, accumulated over batches, in physical units."""

from __future__ import annotations

from typing import Dict

import torch

from atomtrain.data.info import TargetInfo, display_name


class Metrics:
    """Running sums of squared and absolute errors, reported per target."""

    def __init__(self, targets: Dict[str, TargetInfo]):
        self.targets = targets
        self.sums: Dict[tuple, list] = {}

    def update(self, errors: Dict[str, Dict[str, torch.Tensor]]) -> None:
        for name, kinds in errors.items():
            for kind, error in kinds.items():
                if kind.startswith("_"):
                    continue  # loss-only views of other errors
                error = error.detach().double()
                entry = self.sums.setdefault((name, kind), [0.0, 0.0, 0])
                entry[0] += float(error.pow(2).sum())
                entry[1] += float(error.abs().sum())
                entry[2] += error.numel()

    def report(self) -> Dict[str, float]:
        """``{"energy RMSE (meV/atom)": ..., "forces MAE (meV/Å)": ...}``."""
        result = {}
        for (name, kind), (sq, ab, n) in sorted(self.sums.items()):
            if n == 0:
                continue
            label, factor, unit = self._describe(name, kind)
            result[f"{label} RMSE ({unit})"] = (sq / n) ** 0.5 * factor
            result[f"{label} MAE ({unit})"] = ab / n * factor
        return result

    def label(self, name: str, kind: str) -> str:
        """The quantity's name in the report (``forces``, ``U0``, ...)."""
        return self._describe(name, kind)[0]

    def _describe(self, name: str, kind: str) -> tuple[str, float, str]:
        info = self.targets[name]
        short = display_name(name)
        if info.is_energy:
            if kind == "forces":
                return (
                    "forces" if short == "energy" else f"{short} forces",
                    1000.0,
                    "meV/Å",
                )
            if kind == "stress":
                label = "stress" if short == "energy" else f"{short} stress"
                return label, 1000.0, "meV/Å^3"
            per = "" if info.per_atom else "/atom"
            return short, 1000.0, f"meV{per}"
        return short, 1.0, info.unit or "-"
