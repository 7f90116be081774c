"""Evaluate a model over a dataset, one batch at a time.

The one place where predictions are scored, shared by ``atomtrain eval``, the
Python API and the end-of-training report, so that they all agree. Memory stays
bounded whatever the size of the dataset: structures are read per batch (a
packed store is never loaded whole), metrics are running sums, predictions go
to a sink as they are made, and parity plots get a bounded sample.

Extension points: :func:`evaluate_model` takes the targets to predict as a
``DatasetInfo`` (choose them with :func:`~atomtrain.evaluation.models.select_targets`),
and each batch goes through :func:`_score_batch`, where more per-batch outputs
(uncertainties beside predictions, calibration sums) belong.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, Optional, Sequence

import torch

from atomtrain.data.info import DatasetInfo
from atomtrain.data.sequences import Dataset
from atomtrain.data.structure import Structure
from atomtrain.data.systems import compute_neighbors
from atomtrain.errors import UserError
from atomtrain.evaluation.models import model_call, model_dtype
from atomtrain.evaluation.sample import ParitySample
from atomtrain.evaluation.writing import PredictionSink
from atomtrain.training.evaluate import Batch, predict, references
from atomtrain.training.losses import normalised_errors
from atomtrain.training.metrics import Metrics
from atomtrain.training.progress import bar
from atomtrain.uncertainty.scoring import UncertaintyScores


PARITY_SAMPLE = 20_000  # pairs per panel: more only slows drawing


@dataclass
class Evaluation:
    """What an evaluation leaves: exact metrics over every labelled structure
    (empty without references), the number of structures, and a bounded sample
    of (predicted, reference) pairs for plots."""

    info: DatasetInfo
    metrics: Dict[str, float] = field(default_factory=dict)
    n_structures: int = 0
    sample: ParitySample = field(default_factory=ParitySample)
    # calibration figures per target, when the model offers uncertainties
    calibration: Dict[str, Dict[str, float]] = field(default_factory=dict)
    uncertainty: Optional[UncertaintyScores] = None


def evaluate_model(
    model,
    structures: Dataset,
    info: DatasetInfo,
    batch_size: int = 16,
    *,
    output: Optional[PredictionSink] = None,
    device: torch.device | str = "cpu",
    dtype: Optional[torch.dtype] = None,
    sample_size: int = PARITY_SAMPLE,
    progress: str = "never",
    label: str = "evaluation",
) -> Evaluation:
    """Predict the targets of ``info`` for ``structures`` with an exported or
    in-memory model (already on ``device``), score them against the references
    the structures carry and send the predictions to ``output``.

    ``structures`` may be a list or a lazy (packed) dataset: it is read one
    batch at a time. The sink is closed at the end, also on errors (told
    whether the evaluation completed)."""
    if batch_size < 1:
        raise UserError(f"the batch size must be at least 1, got {batch_size}.")
    device = torch.device(device)
    dtype = dtype or model_dtype(model)
    call = model_call(model)
    requests = model.requested_neighbor_lists()
    metrics = Metrics(info.targets)
    result = Evaluation(info, sample=ParitySample(sample_size))
    scores = UncertaintyScores(model, info)
    n_batches = -(-len(structures) // batch_size)
    progress_bar = bar(n_batches, label, progress, unit="batch", leave=False)
    completed = False
    try:
        for start in range(0, len(structures), batch_size):
            batch = structures[start : start + batch_size]
            _check_types(batch, info)
            compute_neighbors(batch, requests)
            prediction = predict(call, batch, requests, info.targets, dtype, device)
            _score_batch(batch, prediction, info, metrics, result, dtype, device)
            if scores:  # sigmas beside the predictions, errors kept for scoring
                reference = references(batch, info.targets, dtype, device)
                scores.add(call, batch, requests, prediction, reference, dtype, device)
            if output is not None:
                output.add(batch, prediction)
            progress_bar.update(1)
        completed = True
    finally:
        progress_bar.close()
        if output is not None:
            output.close(completed)
    result.metrics = metrics.report()
    if scores:
        result.calibration, result.uncertainty = scores.report(), scores
    return result


def _check_types(batch: Sequence[Structure], info: DatasetInfo) -> None:
    known = set(info.atomic_types)
    for structure in batch:
        unknown = set(structure.types.tolist()) - known
        if unknown:
            raise UserError(
                f"structure {structure.source} contains atomic types "
                f"{sorted(unknown)} that the model was not trained on (it knows "
                f"{sorted(known)})."
            )


def _score_batch(
    batch: Sequence[Structure],
    prediction: Batch,
    info: DatasetInfo,
    metrics: Metrics,
    result: Evaluation,
    dtype: torch.dtype,
    device: torch.device,
) -> None:
    """Add one batch to the running metrics and to the parity sample."""
    reference = references(batch, info.targets, dtype, device)
    n_atoms = torch.tensor([len(s) for s in batch], dtype=dtype, device=device)
    errors = normalised_errors(prediction, reference, info.targets, n_atoms)
    metrics.update(errors)
    result.n_structures += len(batch)
    for name, kinds in errors.items():
        for kind, error in kinds.items():
            if kind.startswith("_"):
                continue
            # the reference, on the scale of the error (energies per atom)
            expected = reference_rows(reference, name, kind, n_atoms, info)
            result.sample.add(
                (name, kind),
                (expected + error).detach().double().cpu().numpy(),
                expected.detach().double().cpu().numpy(),
            )


def reference_rows(
    reference: Batch, name: str, kind: str, n_atoms: torch.Tensor, info: DatasetInfo
) -> torch.Tensor:
    """The labelled reference values of one (target, kind), energies per atom as
    in the metrics."""
    values = getattr(reference, kind)[name]
    target = info.targets[name]
    if kind == "values" and target.is_energy and not target.per_atom:
        rows = reference.rows[(name, kind)]
        values = values / n_atoms[rows].unsqueeze(1)
    return values
