"""What to evaluate on: a dataset section (a dict, or a YAML file holding
one), a structure file (any format the readers take, packed stores included),
or ASE ``Atoms`` already in memory."""

from __future__ import annotations

import os
from typing import Any, List, Tuple

from atomtrain.data.dataset import read_dataset
from atomtrain.data.readers import structure_from_atoms
from atomtrain.data.sequences import Dataset
from atomtrain.errors import UserError
from atomtrain.options.expand import expand_dataset
from atomtrain.options.load import read_yaml
from atomtrain.options.schema import DatasetSection
from atomtrain.options.validation import validate


def read_evaluation_data(data: Any) -> Tuple[Dataset, List[str]]:
    """(structures, names of the targets the data asks for). A bare structure
    file or ``Atoms`` ask for none: every target of the model is predicted, and
    scored where the file has the matching reference."""
    if _is_atoms(data):
        data = [data]
    if isinstance(data, (list, tuple)) and data and all(map(_is_atoms, data)):
        structures = [
            structure_from_atoms(a, "atoms", i, 1.0) for i, a in enumerate(data)
        ]
        return structures, []
    if isinstance(data, os.PathLike):
        data = os.fspath(data)
    asks_for_targets = True
    if isinstance(data, str) and data.endswith((".yaml", ".yml")):
        section = read_yaml(data)
        asks_for_targets = bool(section.get("targets"))
    elif isinstance(data, str):
        section, asks_for_targets = {"systems": data}, False
    elif isinstance(data, dict):
        section = data
        asks_for_targets = bool(section.get("targets"))
    else:
        raise UserError(
            f"cannot evaluate on {type(data).__name__} {data!r}: give a dataset "
            "section (a dict like the YAML's, or a .yaml file holding one), a "
            "structure file, or ASE Atoms."
        )
    section = expand_dataset(section, "eval")
    section = validate(DatasetSection, section, prefix="eval").model_dump()
    structures, targets = read_dataset(section, {})
    return structures, list(targets) if asks_for_targets else []


def _is_atoms(value: Any) -> bool:
    import ase

    return isinstance(value, ase.Atoms)
