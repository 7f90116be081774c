"""What a run shows besides ``train.log`` and ``train.csv``: progress bars and
experiment trackers while it trains (observers), plots and a table of metrics
per split once the exported model exists. Driven by the ``logging`` options."""

from __future__ import annotations

import logging
import os
from typing import List

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
) -> None:
    """Learning curves, one parity plot per split and a table of the exported
    model's metrics per split. The model is already saved: a failure here is
    logged as a warning and never fails the run."""
    settings = logging_options(options)
    if not settings["plots"] or not is_main_process():
        return
    from atomtrain.training.plots import have_matplotlib

    if not have_matplotlib():
        return
    try:
        _plots(model, splits, dataset_info, dtype, device, options, output_dir)
    except Exception as error:  # plots are a convenience, the model is safe
        logger.warning(f"warning: the plots could not be made ({error!r})")


def _plots(model, splits, dataset_info, dtype, device, options, output_dir) -> None:
    from atomtrain.cli.eval import gather_predictions, log_metrics
    from atomtrain.training.plots import write_learning_curves, write_parity_plot

    write_learning_curves(
        os.path.join(output_dir, "train.csv"),
        os.path.join(output_dir, "learning_curves.png"),
    )
    training = options.get("architecture", {}).get("training", {})
    batch_size = int(training.get("batch_size", 8))
    progress = logging_options(options)["progress_bar"]
    reports, sampled = {}, False
    for split, datasets in splits.items():
        structures, total = _sample(datasets, MAX_STRUCTURES)
        if not structures:
            continue
        evaluation = gather_predictions(
            model, structures, dataset_info, dtype, device, batch_size, progress, split
        )
        label = split if len(structures) == total else f"{split} ({total} in all)"
        sampled = sampled or len(structures) < total
        reports[split] = evaluation.report
        path = os.path.join(output_dir, f"parity_{split}.png")
        write_parity_plot(path, evaluation, dataset_info, label)
    title = "metrics of the exported model"
    if sampled:
        title += f" (at most {MAX_STRUCTURES} structures per split)"
    log_metrics(title, reports)


def _sample(datasets, limit: int) -> tuple[list, int]:
    """At most ``limit`` structures spread evenly over the datasets of a split
    (lists, or lazy sequences that are never read whole), and their total."""
    total = sum(len(dataset) for dataset in datasets)
    if total <= limit:
        return [s for dataset in datasets for s in dataset], total
    picks = sorted({round(i * (total - 1) / (limit - 1)) for i in range(limit)})
    chosen, offset = [], 0
    for dataset in datasets:
        n = len(dataset)
        chosen += [dataset[i - offset] for i in picks if offset <= i < offset + n]
        offset += n
    return chosen, total
