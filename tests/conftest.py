"""Shared fixtures: the data files of ``tests/resources``."""

import os

import pytest
import torch

from atomtrain.data.dataset import read_dataset
from atomtrain.options.expand import expand_dataset
from atomtrain.options.schema import DatasetSection
from atomtrain.options.validation import validate


RESOURCES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "resources")


@pytest.fixture(scope="session")
def resources() -> str:
    """Folder of the test data files."""
    return RESOURCES


@pytest.fixture(scope="session")
def read_resource():
    """``read(file, targets)`` -> (structures, target infos) of a resource file,
    ``targets`` in the short form of the options file."""

    def read(name: str, targets: dict):
        section = expand_dataset(
            {"systems": os.path.join(RESOURCES, name), "targets": targets}, "x"
        )
        section = validate(DatasetSection, section).model_dump()
        return read_dataset(section, {})

    return read


@pytest.fixture(autouse=True)
def one_thread():
    """One torch thread: tiny models run faster and reproducibly on small CPUs."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
