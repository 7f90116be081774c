"""atomtrain: train, evaluate and export machine-learning models of atoms."""

from importlib.metadata import PackageNotFoundError, version


try:
    __version__ = version("atomtrain")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+unknown"
