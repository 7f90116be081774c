"""The Python API: what notebooks, scripts and workflow engines call.

Each function takes what the command line takes (options as a dict or a YAML
path) and returns plain objects: the run folder and files, metrics as a dict,
predictions as ASE ``Atoms``. The command line is a thin layer over these.
"""

from atomtrain.api.data import describe_store, pack_data
from atomtrain.api.evaluating import EvaluationResult, evaluate
from atomtrain.api.exporting import export_checkpoint
from atomtrain.api.models import load_checkpoint, load_model
from atomtrain.api.training import TrainingResult, train


__all__ = [
    "EvaluationResult",
    "TrainingResult",
    "describe_store",
    "evaluate",
    "export_checkpoint",
    "load_checkpoint",
    "load_model",
    "pack_data",
    "train",
]
