"""The architecture contract: class checks, registry names, hypers kinds."""

import subprocess
import sys

import pytest
import torch
from typing_extensions import TypedDict

from atomtrain.abc import ModelInterface, TrainerInterface
from atomtrain.architectures.hypers import defaults_of, resolve_hypers
from atomtrain.architectures.registry import (
    all_architectures,
    find_architecture,
    import_architecture,
)
from atomtrain.data.info import DatasetInfo
from atomtrain.errors import UserError


def test_model_missing_class_attributes_are_named():
    class Incomplete(ModelInterface):
        __supported_devices__ = ["cpu"]

    with pytest.raises(TypeError, match="__checkpoint_version__.*__supported_dtypes__"):
        Incomplete({}, DatasetInfo([1], {}))


def test_model_missing_methods_are_named():
    class NoMethods(ModelInterface):
        __checkpoint_version__ = 1
        __supported_devices__ = ["cpu"]
        __supported_dtypes__ = [torch.float32]
        __default_metadata__ = None

    with pytest.raises(
        TypeError, match="forward, requested_neighbor_lists, restart, supported_outputs"
    ):
        NoMethods({}, DatasetInfo([1], {}))


def test_trainer_checkpoint_version_must_be_positive_int():
    class BadTrainer(TrainerInterface):
        __checkpoint_version__ = 0

    with pytest.raises(TypeError, match="must be an int >= 1"):
        BadTrainer({})


def test_registry_knows_soap_bpnn_and_suggests_close_names():
    assert all_architectures()["soap_bpnn"].stage == "stable"
    assert find_architecture("soap_bpnn").module == "atomtrain.architectures.soap_bpnn"
    with pytest.raises(UserError, match="Did you mean 'soap_bpnn'.*Known"):
        find_architecture("soap_bpn")
    module = import_architecture("soap_bpnn")
    assert module.__model__.__name__ == "SoapBpnn"
    assert module.__maintainers__


def test_documentation_imports_without_model_code():
    code = (
        "import sys; from atomtrain.architectures.registry import import_documentation;"
        "d = import_documentation('soap_bpnn'); assert d.ModelHypers;"
        "assert 'atomtrain.architectures.soap_bpnn.model' not in sys.modules;"
        "assert 'torch' not in sys.modules, 'documentation must stay light'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


class PlainHypers:
    width = 16
    nested = {"depth": 2}


class TypedHypers(TypedDict):
    width: int = 16
    """Width."""
    ratio: float = 0.5
    """Ratio."""


def test_plain_class_hypers_merge_without_type_checks():
    merged = resolve_hypers(PlainHypers, {"nested": {"depth": 3}}, "model", "x")
    assert merged == {"width": 16, "nested": {"depth": 3}}
    merged = resolve_hypers(PlainHypers, {"width": "wide"}, "model", "x")
    assert merged["width"] == "wide"
    with pytest.raises(UserError, match="'model.widht'.*Did you mean 'width'"):
        resolve_hypers(PlainHypers, {"widht": 3}, "model", "x")


def test_typed_hypers_are_validated():
    assert defaults_of(TypedHypers) == {"width": 16, "ratio": 0.5}
    assert resolve_hypers(TypedHypers, {"ratio": "0.25"}, "model", "x")["ratio"] == 0.25
    with pytest.raises(UserError, match="model.width.*'wide'"):
        resolve_hypers(TypedHypers, {"width": "wide"}, "model", "x")
    with pytest.raises(UserError, match="model.ratoi.*Did you mean 'ratio'"):
        resolve_hypers(TypedHypers, {"ratoi": 1.0}, "model", "x")
