"""``atomtrain train``: train a model from an options file, or restart one."""

from __future__ import annotations

import logging
import os
import random
import shutil

import numpy as np
import torch
import yaml

from atomtrain.architectures.registry import import_architecture
from atomtrain.cli.export import load_model
from atomtrain.data.dataset import load_datasets
from atomtrain.data.sequences import LazyStructures, Subset, concatenate
from atomtrain.errors import UserError
from atomtrain.export import save_exported
from atomtrain.options.load import apply_overrides, load_options, read_yaml
from atomtrain.training import distributed
from atomtrain.training.files import atomic_copy, atomic_write_text
from atomtrain.training.isolated_atoms import isolated_atom_energies
from atomtrain.training.loop import TrainingStopped
from atomtrain.training.observers import Observers
from atomtrain.training.reporting import make_observers, report_after_training
from atomtrain.training.runs import find_resumable, new_run_dir


logger = logging.getLogger("atomtrain")
DTYPES = {32: torch.float32, 64: torch.float64}
EXIT_STOPPED = 75  # EX_TEMPFAIL: stopped on a signal, resumable with --restart
REPORT_SAMPLE = 10_000  # structures of a packed split shown in the plots


def add_parser(commands) -> None:
    parser = commands.add_parser(
        "train",
        help="train a model",
        description="Train a model described by an "
        "options file; writes outputs/DATE/TIME/ and model.ckpt, model.pt here.",
    )
    parser.add_argument("options", help="options file (YAML)")
    parser.add_argument(
        "-o",
        "--override",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override an option, e.g. architecture.training.num_epochs=5 (repeatable)",
    )
    parser.add_argument(
        "--restart",
        metavar="CHECKPOINT",
        help="continue from a checkpoint, or 'auto' for the newest "
        "checkpoint under outputs/ (starts afresh when there is none)",
    )
    parser.add_argument(
        "--output-dir",
        default=None,
        help="run folder (default: outputs/YYYY-MM-DD/HH-MM-SS)",
    )
    parser.set_defaults(run=run)


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


def _run_folder(args, options: dict) -> tuple[dict, str | None, str]:
    """(options, checkpoint to resume, run folder): decided once, by rank 0."""
    restart, output_dir = args.restart, args.output_dir
    if restart == "auto":
        seed_given = "seed" in apply_overrides(read_yaml(args.options), args.override)
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


def run(args) -> int:
    options = load_options(args.options, args.override)
    model_class = import_architecture(options["architecture"]["name"]).__model__
    device = pick_device(options["device"], model_class.__supported_devices__)
    world = distributed.start(device)  # a world of one unless torchrun/srun
    atomtrain_logger = logging.getLogger("atomtrain")
    level = atomtrain_logger.level
    if not world.is_main:
        atomtrain_logger.setLevel(logging.ERROR)  # rank 0 reports for all
    handler = None
    try:
        # the seed drawn for an unset 'seed', the run folder and the checkpoint
        # to resume are rank 0's
        options, restart, output_dir = world.on_main(lambda: _run_folder(args, options))
        if world.is_main:
            handler = _log_to_file(os.path.join(output_dir, "train.log"))
        return _train(options, restart, output_dir, world)
    except TrainingStopped as stopped:
        logger.warning(str(stopped))
        return EXIT_STOPPED
    finally:
        if handler is not None:
            atomtrain_logger.removeHandler(handler)
            handler.close()
        atomtrain_logger.setLevel(level)
        world.close()


def _sampled(datasets: list) -> list:
    """Packed splits thinned to at most REPORT_SAMPLE evenly spaced structures:
    the end-of-run plots hold their predictions in memory, and a parity plot of
    millions of points shows nothing more."""
    thinned = []
    for dataset in datasets:
        if isinstance(dataset, LazyStructures) and len(dataset) > REPORT_SAMPLE:
            step = len(dataset) / REPORT_SAMPLE
            indices = [int(i * step) for i in range(REPORT_SAMPLE)]
            logger.info(
                f"the end-of-run report uses {REPORT_SAMPLE} evenly spaced of the "
                f"{len(dataset)} structures of a packed split"
            )
            dataset = Subset(dataset, indices)
        thinned.append(dataset)
    return thinned


def _train(
    options: dict, restart: str | None, output_dir: str, world: distributed.World
) -> int:
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

    train, val, test, dataset_info = load_datasets(options)
    logger.info(
        f"{sum(map(len, train))} training, {sum(map(len, val))} validation, "
        f"{sum(map(len, test))} test structures; atomic types "
        f"{dataset_info.atomic_types}; targets {', '.join(dataset_info.targets)}"
    )
    isolated = isolated_atom_energies(options, dataset_info)
    training_hypers = dict(options["architecture"]["training"])
    training_hypers["loss"] = options["loss"]
    if restart:
        _, model, checkpoint = load_model(restart, "restart", expected=name)
        model = model.restart(dataset_info)
        trainer = trainer_class.load_checkpoint(checkpoint, training_hypers, "restart")
        logger.info(f"restarting from {restart} after epoch {trainer.epoch}")
    elif training_hypers["finetune"]["read_from"]:
        source = training_hypers["finetune"]["read_from"]
        _, model, _ = load_model(source, "finetune", expected=name)
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
    trainer.train(model, dtype, [device], train, val, output_dir)
    if not world.is_main:
        return 0  # rank 0 saves, exports and evaluates

    checkpoint_path = os.path.join(output_dir, "model.ckpt")
    trainer.save_checkpoint(model, checkpoint_path)
    _, export_model, _ = load_model(checkpoint_path, "export")
    exported_path = os.path.join(output_dir, "model.pt")
    save_exported(export_model.export(), exported_path)
    for path in (checkpoint_path, exported_path):
        atomic_copy(path, os.path.basename(path))
    extensions = os.path.join(output_dir, "extensions")
    if os.path.isdir(extensions) and os.listdir(extensions):
        shutil.copytree(extensions, "extensions", dirs_exist_ok=True)
    report_after_training(
        export_model.to(device),
        {"train": _sampled(train), "validation": _sampled(val), "test": _sampled(test)},
        dataset_info,
        dtype,
        device,
        options,
        output_dir,
    )
    if any(len(d) for d in test):
        from atomtrain.cli.eval import evaluate_structures

        evaluate_structures(
            export_model.to(device),
            concatenate(test),
            dataset_info,
            dtype,
            device,
            "test",
            batch_size=8,
        )
    logger.info(
        f"training finished: model.ckpt and model.pt written to "
        f"{output_dir} and copied here"
    )
    return 0
