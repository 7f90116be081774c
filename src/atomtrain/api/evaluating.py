"""Evaluate a model on data and get metrics and predictions back."""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

import ase
import torch

from atomtrain.errors import UserError
from atomtrain.evaluation.engine import Evaluation, evaluate_model
from atomtrain.evaluation.inputs import read_evaluation_data
from atomtrain.evaluation.models import load_exported, model_targets, select_targets
from atomtrain.evaluation.tables import log_metrics
from atomtrain.evaluation.variants import VariantModel
from atomtrain.evaluation.writing import AtomsCollector, ExtxyzWriter
from atomtrain.training.files import atomic_write_text
from atomtrain.uncertainty.scoring import log_calibration


logger = logging.getLogger("atomtrain")


@dataclass
class EvaluationResult:
    """Metrics (empty when the data has no references), predictions as ASE
    ``Atoms`` (``None`` when they were only written to ``output``), and the
    files written."""

    metrics: Dict[str, float]
    n_structures: int
    predictions: Optional[List[ase.Atoms]] = None
    output: Optional[str] = None
    files: List[str] = field(default_factory=list)
    evaluation: Optional[Evaluation] = None  # the parity sample, for plots


def evaluate(
    model: Any,
    data: Any,
    batch_size: int = 16,
    *,
    output: Optional[str | os.PathLike] = None,
    extensions: Optional[str] = None,
    device: str = "cpu",
    plot: bool = False,
    progress: str = "never",
    variant: Optional[str] = None,
) -> EvaluationResult:
    """Predict with ``model`` on ``data`` and score the predictions.

    ``model``: the path of an exported model (``.pt``, from atomtrain or any
    metatomic tool; ``extensions`` names its compiled extensions' folder), or
    a model from :func:`load_model` (a checkpoint's model evaluates in memory).
    ``data``: a dataset section as in the options YAML (dict or ``.yaml``
    path), a structure file, or ASE ``Atoms``. With ``output`` (an extended
    XYZ path) predictions are streamed to that file and not kept in memory, as
    large datasets need; without it they are returned as ``Atoms``. ``plot``
    draws ``OUTPUT_parity.png`` beside the output. ``variant`` (``r2scan``)
    evaluates the model's ``X/r2scan`` targets as plain ``X`` (``energy``)."""
    if batch_size < 1:
        raise UserError(
            f"the batch size (--batch-size, or batch_size in Python) must be at "
            f"least 1, got {batch_size}."
        )
    source = os.fspath(model) if isinstance(model, (str, os.PathLike)) else None
    if source is not None:
        model = load_exported(source, extensions)
    offered = model_targets(model)
    if variant:
        model = VariantModel(model, offered, variant, source or "in memory")
        offered = model.dataset_info
    structures, requested = read_evaluation_data(data)
    info = select_targets(offered, requested, source or "in memory")
    device = torch.device(device)
    model = model.to(device)
    output = os.fspath(output) if output is not None else None
    sink = ExtxyzWriter(output, info) if output else AtomsCollector(info)
    evaluation = evaluate_model(
        model,
        structures,
        info,
        batch_size,
        output=sink,
        device=device,
        progress=progress,
    )
    result = EvaluationResult(evaluation.metrics, evaluation.n_structures)
    result.evaluation = evaluation
    log_metrics("evaluation metrics", {"evaluation": evaluation.metrics})
    if evaluation.calibration:
        log_calibration(evaluation.calibration)
    if output is None:
        result.predictions = sink.frames
        return result
    result.output = output
    result.files.append(output)
    logger.info(
        f"predictions for {evaluation.n_structures} structures written to {output}"
    )
    stem = os.path.splitext(output)[0]
    if evaluation.metrics:
        metrics_path = stem + "_metrics.json"
        report = dict(evaluation.metrics)
        if evaluation.calibration:
            report["uncertainty"] = evaluation.calibration
        atomic_write_text(metrics_path, json.dumps(report, indent=2))
        result.files.append(metrics_path)
        logger.info(f"metrics written to {metrics_path}")
    if plot:
        from atomtrain.training.plots import have_matplotlib, write_parity_plot

        path = stem + "_parity.png"
        if have_matplotlib() and write_parity_plot(path, evaluation, "evaluation"):
            result.files.append(path)
        if have_matplotlib() and evaluation.uncertainty is not None:
            from atomtrain.uncertainty.plots import write_error_bar_plot

            path = stem + "_uncertainty.png"
            if write_error_bar_plot(path, evaluation.uncertainty):
                result.files.append(path)
    return result
