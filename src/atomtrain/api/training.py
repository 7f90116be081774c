"""Train a model from options (a dict or a YAML file) and get the run back."""

from __future__ import annotations

import logging
import os
import random
import shutil
from dataclasses import dataclass, field
from typing import Any, Dict, Optional, Sequence

import numpy as np
import torch
import yaml

from atomtrain.api.models import load_checkpoint
from atomtrain.architectures.registry import import_architecture
from atomtrain.data.dataset import load_datasets
from atomtrain.errors import UserError
from atomtrain.export import save_exported
from atomtrain.options.load import apply_overrides, expand_options, read_yaml
from atomtrain.training import distributed
from atomtrain.training.files import atomic_copy, atomic_write_text
from atomtrain.training.isolated_atoms import isolated_atom_energies
from atomtrain.training.observers import Observers
from atomtrain.training.reporting import make_observers, report_after_training
from atomtrain.training.runs import find_resumable, new_run_dir
from atomtrain.uncertainty.checkpoint import calibrate_after_training


logger = logging.getLogger("atomtrain")
DTYPES = {32: torch.float32, 64: torch.float64}


@dataclass
class TrainingResult:
    """Where a run wrote its files, and the test metrics of the exported model
    (per split, as logged at the end; empty on the non-main processes)."""

    run_dir: str
    checkpoint: Optional[str] = None
    exported: Optional[str] = None
    options: Dict[str, Any] = field(default_factory=dict)
    metrics: Dict[str, Dict[str, float]] = field(default_factory=dict)


def train(
    options: Dict[str, Any] | str | os.PathLike,
    overrides: Sequence[str] = (),
    *,
    restart: Optional[str] = None,
    output_dir: Optional[str] = None,
    copy_to: Optional[str] = ".",
) -> TrainingResult:
    """Train as ``atomtrain train`` does: ``options`` is the YAML's content as a
    dict, or the path of a YAML file; ``overrides`` are ``key.path=value``
    strings; ``restart`` a checkpoint or ``"auto"``. The run writes to
    ``output_dir`` (default ``outputs/DATE/TIME``) and copies ``model.ckpt`` and
    ``model.pt`` into ``copy_to`` (``None``: no copies). Raises
    :class:`atomtrain.training.loop.TrainingStopped` when a signal stopped it
    (resumable with ``restart="auto"``)."""
    raw = read_yaml(os.fspath(options)) if not isinstance(options, dict) else options
    raw = apply_overrides(raw, list(overrides))
    expanded = expand_options(raw)
    model_class = import_architecture(expanded["architecture"]["name"]).__model__
    device = pick_device(expanded["device"], model_class.__supported_devices__)
    world = distributed.start(device)  # a world of one unless torchrun/srun
    atomtrain_logger = logging.getLogger("atomtrain")
    level = atomtrain_logger.level
    if not world.is_main:
        atomtrain_logger.setLevel(logging.ERROR)  # rank 0 reports for all
    elif atomtrain_logger.getEffectiveLevel() > logging.INFO:
        atomtrain_logger.setLevel(logging.INFO)  # train.log gets every line
    handler = None
    try:
        # the seed drawn for an unset 'seed', the run folder and the checkpoint
        # to resume are rank 0's
        seed_given = "seed" in raw
        expanded, restart, output_dir = world.on_main(
            lambda: _run_folder(expanded, seed_given, restart, output_dir)
        )
        if world.is_main:
            handler = _log_to_file(os.path.join(output_dir, "train.log"))
        return _train(expanded, restart, output_dir, world, copy_to)
    finally:
        if handler is not None:
            atomtrain_logger.removeHandler(handler)
            handler.close()
        atomtrain_logger.setLevel(level)
        world.close()


def pick_device(requested: str, supported: list[str]) -> torch.device:
    if requested == "auto":
        if "cuda" in supported and torch.cuda.is_available():
            return torch.device("cuda")
        return torch.device("cpu")
    try:
        device = torch.device(requested)
    except RuntimeError:
        raise UserError(
            f"option 'device' is '{requested}', which is not a device name. Use "
            "auto, cpu or cuda (or cuda:N)."
        ) from None
    if device.type not in supported:
        raise UserError(
            f"device '{requested}' is not supported by this architecture (it "
            f"supports {', '.join(supported)})."
        )
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError(
            f"device '{requested}' was asked for, but CUDA is not available."
        )
    return device


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _log_to_file(path: str) -> logging.Handler:
    handler = logging.FileHandler(path)
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
    logging.getLogger("atomtrain").addHandler(handler)
    return handler


def _run_folder(
    options: dict, seed_given: bool, restart: Optional[str], output_dir: Optional[str]
) -> tuple[dict, Optional[str], str]:
    """(options, checkpoint to resume, run folder): decided once, by rank 0."""
    if restart == "auto":
        found = find_resumable(options, seed_given)
        if found is None:
            restart = None
            logger.info("--restart auto: no checkpoint of this run, starting afresh")
        else:
            restart, previous_dir, previous = found
            options["seed"] = previous["seed"]
            output_dir = output_dir or previous_dir  # continue in the same folder
            logger.info(f"--restart auto: continuing {restart}")
    output_dir = output_dir or new_run_dir()
    os.makedirs(output_dir, exist_ok=True)
    return options, restart, output_dir


def _train(
    options: dict,
    restart: Optional[str],
    output_dir: str,
    world: distributed.World,
    copy_to: Optional[str],
) -> TrainingResult:
    result = TrainingResult(output_dir, options=options)
    if world.is_main:
        atomic_write_text(
            os.path.join(output_dir, "options_restart.yaml"),
            yaml.safe_dump(options, sort_keys=False),
        )
    seed_everything(options["seed"])
    name = options["architecture"]["name"]
    architecture = import_architecture(name)
    model_class, trainer_class = architecture.__model__, architecture.__trainer__
    dtype = DTYPES[options["base_precision"]]
    if dtype not in model_class.__supported_dtypes__:
        raise UserError(
            f"base_precision {options['base_precision']} is not supported by '{name}'."
        )
    device = world.device
    processes = f" in {world.size} processes" if world.size > 1 else ""
    logger.info(
        f"atomtrain: training '{name}' on {device} ({dtype}){processes}, outputs "
        f"in {output_dir}"
    )

    train_sets, val_sets, test_sets, dataset_info = load_datasets(options)
    logger.info(
        f"{sum(map(len, train_sets))} training, {sum(map(len, val_sets))} "
        f"validation, {sum(map(len, test_sets))} test structures; atomic types "
        f"{dataset_info.atomic_types}; targets {', '.join(dataset_info.targets)}"
    )
    isolated = isolated_atom_energies(options, dataset_info)
    training_hypers = dict(options["architecture"]["training"])
    training_hypers["loss"] = options["loss"]
    if restart:
        _, model, checkpoint = load_checkpoint(restart, "restart", expected=name)
        model = model.restart(dataset_info)
        trainer = trainer_class.load_checkpoint(checkpoint, training_hypers, "restart")
        logger.info(f"restarting from {restart} after epoch {trainer.epoch}")
    elif training_hypers["finetune"]["read_from"]:
        source = training_hypers["finetune"]["read_from"]
        _, model, _ = load_checkpoint(source, "finetune", expected=name)
        model = model.restart(dataset_info)
        trainer = trainer_class(training_hypers)
        logger.info(
            f"fine-tuning ({training_hypers['finetune']['method']}) from {source}"
        )
    else:
        model = model_class(options["architecture"]["model"], dataset_info)
        trainer = trainer_class(training_hypers)
    trainer.fixed_compositions = isolated  # used where the baselines are fitted
    n_parameters = sum(p.numel() for p in model.parameters())
    logger.info(f"model has {n_parameters:,} parameters")

    if world.is_main:
        trainer.observers = Observers(make_observers(options, output_dir))
    trainer.train(model, dtype, [device], train_sets, val_sets, output_dir)
    if not world.is_main:
        return result  # rank 0 saves, exports and evaluates

    result.checkpoint = os.path.join(output_dir, "model.ckpt")
    trainer.save_checkpoint(model, result.checkpoint)
    _, export_model, _ = load_checkpoint(result.checkpoint, "export")
    result.exported = os.path.join(output_dir, "model.pt")
    save_exported(export_model.export(), result.exported)
    calibrate_after_training(
        options,
        export_model,
        train_sets,
        val_sets,
        dtype,
        device,
        result.exported,
        test_sets,
    )
    if copy_to is not None:
        _copy_outputs(output_dir, copy_to, (result.checkpoint, result.exported))
    splits = {"train": train_sets, "validation": val_sets, "test": test_sets}
    result.metrics = report_after_training(
        export_model.to(device),
        splits,
        dataset_info,
        dtype,
        device,
        options,
        output_dir,
    )
    where = f" and copied to {copy_to}" if copy_to is not None else ""
    logger.info(
        f"training finished: model.ckpt and model.pt written to {output_dir}{where}"
    )
    return result


def _copy_outputs(output_dir: str, destination: str, paths) -> None:
    for path in paths:
        atomic_copy(path, os.path.join(destination, os.path.basename(path)))
    extensions = os.path.join(output_dir, "extensions")
    if os.path.isdir(extensions) and os.listdir(extensions):
        target = os.path.join(destination, "extensions")
        shutil.copytree(extensions, target, dirs_exist_ok=True)
