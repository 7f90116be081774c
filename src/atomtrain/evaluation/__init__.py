"""Evaluation: run a model (exported or in memory) over a dataset in batches,
accumulate exact metrics, stream the predictions to a file or to ASE ``Atoms``
and keep a bounded sample of (predicted, reference) pairs for parity plots.

This package sits in the training layer: it builds on ``training``'s
prediction, losses and metrics, and the end-of-training report uses it. It
never imports the registry, the Python API or the command line.
"""

from atomtrain.evaluation.engine import Evaluation, evaluate_model
from atomtrain.evaluation.models import load_exported, model_call, model_targets


__all__ = [
    "Evaluation",
    "evaluate_model",
    "load_exported",
    "model_call",
    "model_targets",
]
