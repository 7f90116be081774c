"""Uncertainties during evaluation: the predicted sigmas of each batch, kept
beside the predictions (so they are written to the output file) and scored
against the errors once every batch is in (Spearman, RMS of error/sigma,
miscalibration area, NLL)."""

from __future__ import annotations

from typing import Dict, List, Sequence

import torch
from metatomic.torch import AtomisticModel, ModelOutput

from atomtrain.data.info import DatasetInfo, display_name
from atomtrain.data.structure import Structure
from atomtrain.data.systems import make_system
from atomtrain.uncertainty import metrics
from atomtrain.uncertainty.names import uncertainty_name


def offered_outputs(model) -> List[str]:
    """Names of the uncertainty outputs ``model`` offers (exported, or an
    in-memory LLPR or ensemble wrapper)."""
    if isinstance(model, AtomisticModel):
        return list(model.capabilities().outputs)
    return list(
        getattr(model, "extra_outputs", None)
        or getattr(model, "uncertainty_outputs", None)
        or []
    )


class UncertaintyScores:
    """Sigmas and errors of the scalar and Cartesian targets whose uncertainty
    the model offers (``{target}_uncertainty``; each Cartesian component is
    one value); empty (false) for other models."""

    def __init__(self, model, info: DatasetInfo):
        offered = set(offered_outputs(model))
        self.info = info
        self.outputs = {
            name: uncertainty_name(name)
            for name, target in info.targets.items()
            if uncertainty_name(name) in offered and not target.is_spherical
        }
        self.errors: Dict[str, List[torch.Tensor]] = {t: [] for t in self.outputs}
        self.sigmas: Dict[str, List[torch.Tensor]] = {t: [] for t in self.outputs}
        self.references: Dict[str, List[torch.Tensor]] = {t: [] for t in self.outputs}

    def __bool__(self) -> bool:
        return bool(self.outputs)

    def add(
        self,
        call,
        batch: Sequence[Structure],
        requests,
        prediction,
        reference,
        dtype: torch.dtype,
        device: torch.device,
    ) -> None:
        """Predict the sigmas of ``batch`` (no gradients), store them in
        ``prediction.values`` under the uncertainty output's name and keep the
        labelled rows' errors for :meth:`report`."""
        systems = [make_system(s, requests, dtype, device)[0] for s in batch]
        outputs = {
            output: ModelOutput(
                sample_kind="atom" if self.info.targets[name].per_atom else "system"
            )
            for name, output in self.outputs.items()
        }
        with torch.no_grad():
            result = call(systems, outputs)
        for name, output in self.outputs.items():
            sigma = result[output].block().values
            sigma = sigma.reshape(sigma.shape[0], -1).detach()
            prediction.values[output] = sigma
            if name not in reference.values:
                continue
            rows = reference.rows[(name, "values")]
            error = prediction.values[name][rows] - reference.values[name]
            self.errors[name].append(error.double().cpu())
            self.sigmas[name].append(sigma[rows].double().cpu())
            self.references[name].append(reference.values[name].double().cpu())

    def arrays(self, name: str):
        """(errors, sigmas, references) of ``name``, flat, float64."""
        if not self.errors[name]:
            return None
        return tuple(
            torch.cat(parts[name]).reshape(-1)
            for parts in (self.errors, self.sigmas, self.references)
        )

    def report(self) -> Dict[str, Dict[str, float]]:
        """Calibration figures per target with labelled structures."""
        found = {}
        for name in self.outputs:
            arrays = self.arrays(name)
            if arrays is not None:
                found[display_name(name)] = metrics.calibration_report(*arrays[:2])
        return found


def log_calibration(report: Dict[str, Dict[str, float]]) -> None:
    """One line per target: the four calibration figures."""
    import logging

    logger = logging.getLogger("atomtrain")
    logger.info("uncertainty calibration (per structure, or per atom):")
    for name, figures in report.items():
        text = ", ".join(f"{key} {value:.4g}" for key, value in figures.items())
        logger.info(f"  {name}: {text}")
