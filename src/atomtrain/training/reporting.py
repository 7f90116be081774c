"""What a run shows besides ``train.log`` and ``train.csv``: progress bars and
experiment trackers while it trains (observers), plots and a table of metrics
per split once the exported model exists. Driven by the ``logging`` options."""

from __future__ import annotations

import logging
import os
from typing import Dict, List, Optional

from atomtrain.data.sequences import Dataset, concatenate
from atomtrain.evaluation.engine import evaluate_model
from atomtrain.evaluation.tables import log_metrics
from atomtrain.options.schema import LoggingSection
from atomtrain.training.observers import TrainingObserver


logger = logging.getLogger("atomtrain")
MAX_STRUCTURES = 2000  # per split in the plots: enough to see, cheap to predict


def logging_options(options: dict) -> dict:
    """The expanded ``logging`` section (defaults when ``options`` has none)."""
    given = options.get("logging")
    return LoggingSection.model_validate(given or {}).model_dump()


def is_main_process(environ=os.environ) -> bool:
    """Rank 0 of a torchrun or srun launch (or a plain run): the one process
    that shows bars, logs to trackers and draws plots. Read from the launcher's
    variables because the process group may not exist yet."""
    if "RANK" in environ and "WORLD_SIZE" in environ:
        rank = environ["RANK"]
    elif "SLURM_PROCID" in environ and "SLURM_STEP_ID" in environ:
        rank = environ["SLURM_PROCID"]
    else:
        return True
    return rank.strip() in ("0", "")


def make_observers(options: dict, output_dir: str) -> List[TrainingObserver]:
    """Observers asked for by ``options`` (progress bars, loggers); a requested
    logger whose package is missing is refused before training starts."""
    from atomtrain.training.loggers import require
    from atomtrain.training.progress import ProgressBars, wanted

    settings = logging_options(options)
    if settings["tensorboard"]:
        require("tensorboard", "logging.tensorboard", "tensorboard")
    if settings["wandb"] is not False:
        require("wandb", "logging.wandb", "wandb")
    observers: List[TrainingObserver] = []
    if not is_main_process():
        return observers
    if wanted(settings["progress_bar"]):
        training = options.get("architecture", {}).get("training", {})
        observers.append(
            ProgressBars(training.get("num_epochs"), settings["progress_bar"])
        )
    if settings["wandb"] is not False:  # first: the one that can fail to start
        from atomtrain.training.loggers import WandbLogger

        observers.append(WandbLogger(settings["wandb"], output_dir, options))
    if settings["tensorboard"]:
        from atomtrain.training.loggers import TensorBoardLogger

        observers.append(TensorBoardLogger(output_dir))
    return observers


def report_after_training(
    model, splits: dict, dataset_info, dtype, device, options: dict, output_dir: str
) -> Dict[str, Dict[str, float]]:
    """A table of the exported model's metrics per split, learning curves and
    one parity plot per split (with matplotlib and ``logging.plots``). The test
    split is scored whole, streamed; training and validation splits (plotted
    only) are thinned to MAX_STRUCTURES. The model is already saved: a failure
    of the plots is logged as a warning and never fails the run. Returns the
    metrics per split."""
    settings = logging_options(options)
    main = is_main_process()
    plots = settings["plots"] and main
    if plots:
        from atomtrain.training.plots import (
            have_matplotlib,
            write_learning_curves,
            write_parity_plot,
        )

        plots = have_matplotlib()
    training = options.get("architecture", {}).get("training", {})
    batch_size = int(training.get("batch_size", 8))
    reports, sampled = {}, False
    for split, datasets in splits.items():
        if split != "test" and not plots:
            continue
        limit = None if split == "test" else MAX_STRUCTURES
        structures, total = _sample(datasets, limit)
        if not structures:
            continue
        evaluation = evaluate_model(
            model,
            structures,
            dataset_info,
            batch_size,
            device=device,
            dtype=dtype,
            progress=settings["progress_bar"] if main else "never",
            label=split,
        )
        reports[split] = evaluation.metrics
        sampled = sampled or len(structures) < total
        if plots:
            label = split if len(structures) == total else f"{split} ({total} in all)"
            path = os.path.join(output_dir, f"parity_{split}.png")
            _safely(write_parity_plot, path, evaluation, label)
    if plots:
        _safely(
            write_learning_curves,
            os.path.join(output_dir, "train.csv"),
            os.path.join(output_dir, "learning_curves.png"),
        )
    title = "metrics of the exported model"
    if sampled:
        title += f" (at most {MAX_STRUCTURES} structures of training and validation)"
    log_metrics(title, reports)
    return reports


def _safely(draw, *args) -> None:
    """Plots are a convenience and the model is safe: a failure is a warning."""
    try:
        draw(*args)
    except Exception as error:
        logger.warning(f"warning: a plot could not be made ({error!r})")


def _sample(datasets, limit: Optional[int]) -> tuple[Dataset, int]:
    """At most ``limit`` structures (all with None) spread evenly over the
    datasets of a split, and their total; lazy datasets are never read whole
    (the structures are read when evaluated)."""
    total = sum(len(dataset) for dataset in datasets)
    if limit is None or total <= limit:
        return concatenate(list(datasets)), total
    picks = sorted({round(i * (total - 1) / (limit - 1)) for i in range(limit)})
    chosen, offset = [], 0
    for dataset in datasets:
        n = len(dataset)
        chosen += [dataset[i - offset] for i in picks if offset <= i < offset + n]
        offset += n
    return chosen, total
