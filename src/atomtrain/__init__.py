"""atomtrain: train, evaluate and export machine-learning models of atoms.

``from atomtrain import train, evaluate, export_checkpoint, load_model`` is the
Python API (see :mod:`atomtrain.api`; ``export`` alone is the name of the module
:mod:`atomtrain.export`). It is imported on first use, so that ``import
atomtrain`` stays light.
"""

from importlib.metadata import PackageNotFoundError, version


try:
    __version__ = version("atomtrain")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+unknown"

_API = (
    "train",
    "evaluate",
    "export_checkpoint",
    "load_model",
    "TrainingResult",
    "EvaluationResult",
)
__all__ = ["__version__", *_API]


def __getattr__(name: str):
    if name in _API:
        import atomtrain.api

        return getattr(atomtrain.api, name)
    raise AttributeError(f"module 'atomtrain' has no attribute {name!r}")
