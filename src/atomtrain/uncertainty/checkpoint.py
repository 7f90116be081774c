"""Calibrate the uncertainty of a checkpoint or of a model that just trained,
and write the exported model with the uncertainty outputs."""

from __future__ import annotations

import json
import logging
import os
from typing import List, Optional

import torch

from atomtrain.data.structure import Structure
from atomtrain.errors import UserError
from atomtrain.export import save_exported
from atomtrain.uncertainty.export import (
    DEFAULT_EPOCHS,
    DEFAULT_MEMBERS,
    calibrate,
    describe,
    export_uncertainty,
)


logger = logging.getLogger("atomtrain")


def read_structures(path: str, what: str) -> List[Structure]:
    """The structures of a dataset section (YAML, as for ``atomtrain eval``)
    or of a structure file."""
    from atomtrain.data.dataset import read_dataset
    from atomtrain.options.expand import expand_dataset
    from atomtrain.options.load import read_yaml
    from atomtrain.options.schema import DatasetSection
    from atomtrain.options.validation import validate

    if not os.path.exists(path):
        raise UserError(f"{what} file '{path}' does not exist.")
    section = read_yaml(path) if path.endswith((".yaml", ".yml")) else path
    if not isinstance(section, dict):
        section = {"systems": section}
    section = expand_dataset(section, what)
    section = validate(DatasetSection, section, prefix=what).model_dump()
    structures, _ = read_dataset(section, {})
    return list(structures)


def training_structures(checkpoint_path: str) -> List[Structure]:
    """The training split of the run that wrote ``checkpoint_path``, rebuilt
    from the ``options_restart.yaml`` beside it (same files, seed, fractions)."""
    from atomtrain.data.dataset import load_datasets
    from atomtrain.options.load import read_yaml

    folder = os.path.dirname(os.path.abspath(checkpoint_path))
    path = os.path.join(folder, "options_restart.yaml")
    if not os.path.exists(path):
        raise UserError(
            f"there is no options_restart.yaml beside '{checkpoint_path}' to find "
            "its training set: name the structures the covariance is accumulated "
            "over with --train (the training options.yaml, a dataset YAML or a "
            "structure file)."
        )
    try:
        train = load_datasets(read_yaml(path))[0]
    except UserError as error:
        raise UserError(
            f"cannot read the training set named in '{path}' ({error}); name it "
            "with --train."
        ) from None
    return [s for dataset in train for s in dataset]


def is_training_options(path: str) -> bool:
    """Whether ``path`` is a training options file (it has ``training_set``)
    rather than a dataset section."""
    from atomtrain.options.load import read_yaml

    if not path.endswith((".yaml", ".yml")) or not os.path.exists(path):
        return False
    content = read_yaml(path)
    return isinstance(content, dict) and "training_set" in content


def training_split(options_path: str) -> List[Structure]:
    """The training split that ``atomtrain train options_path`` uses (same
    files, seed and fractions), for ``--train options.yaml``."""
    from atomtrain.data.dataset import load_datasets
    from atomtrain.options.load import load_options

    train = load_datasets(load_options(options_path, []))[0]
    return [s for dataset in train for s in dataset]


def calibrate_checkpoint(
    model,
    checkpoint_path: str,
    calibration_path: str,
    output: str,
    train_path: Optional[str] = None,
    members: int = DEFAULT_MEMBERS,
    batch_size: int = 16,
    device: str = "cpu",
    method: str = "llpr",
    epochs: int = DEFAULT_EPOCHS,
) -> dict:
    """``atomtrain calibrate`` on ``model``, loaded from ``checkpoint_path``
    for export; returns what was fitted, per target."""
    if not output.endswith(".pt"):
        raise UserError(f"the calibrated model name '{output}' must end in .pt.")
    if members < 2 or members % 2:
        raise UserError(f"--members must be an even number >= 2, got {members}.")
    calibration = read_structures(calibration_path, "calibration")
    if train_path is None:
        train = training_structures(checkpoint_path)
    elif is_training_options(train_path):
        train = training_split(train_path)
    else:
        train = read_structures(train_path, "train")
    dtype = next(model.parameters()).dtype
    section = {"method": method, "ensemble_members": members, "epochs": epochs}
    wrapper, fitted = calibrate(
        model, train, calibration, dtype, torch.device(device), section, batch_size
    )
    description = describe(fitted, members)
    save_exported(export_uncertainty(wrapper, description=description), output)
    logger.info(f"calibrated model written to {output}")
    return description


def calibrate_after_training(
    options: dict, model, train, val, dtype, device, exported_path: str, test=()
) -> None:
    """``uncertainty:`` in the training options: calibrate on the validation
    set, write ``exported_path`` with the uncertainty outputs and log the
    calibration figures of the test set (when there is one)."""
    section = options.get("uncertainty") or False
    if section is False:
        return
    train = [s for dataset in train for s in dataset]
    val = [s for dataset in val for s in dataset]
    if not val:
        raise UserError(
            "uncertainty needs a validation set to calibrate on: set "
            "validation_set to a fraction above 0 or to a dataset."
        )
    wrapper, fitted = calibrate(model, train, val, dtype, device, section)
    description = describe(fitted, section.get("ensemble_members", DEFAULT_MEMBERS))
    save_exported(export_uncertainty(wrapper, description=description), exported_path)
    logger.info(f"{exported_path} has uncertainty outputs: {json.dumps(description)}")
    test = [s for dataset in test for s in dataset]
    if test:
        from atomtrain.evaluation.engine import evaluate_model
        from atomtrain.uncertainty.scoring import log_calibration

        info = wrapper.model.dataset_info
        evaluation = evaluate_model(wrapper, test, info, 8, device=device, dtype=dtype)
        if evaluation.calibration:
            logger.info(f"on the {len(test)} test structures:")
            log_calibration(evaluation.calibration)
