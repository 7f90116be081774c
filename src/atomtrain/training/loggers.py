"""Optional experiment trackers beside ``train.csv``: TensorBoard and Weights &
Biases. Each is an observer that gets the same rows as the CSV file, so the
numbers agree everywhere."""

from __future__ import annotations

import importlib
import os
from typing import Dict

from atomtrain.errors import UserError
from atomtrain.training.observers import TrainingObserver


def require(module: str, option: str, extra: str) -> None:
    """Refuse a requested logger whose package is missing, before training."""
    try:
        importlib.import_module(module)
    except ImportError:
        raise UserError(
            f"option '{option}' asks for {extra}, but the '{module}' package is "
            f"not installed. Install it with: pip install 'atomtrain[{extra}]' "
            f"(or remove '{option}' from the options)."
        ) from None


def scalars(row: dict) -> Dict[str, float]:
    """The metrics of a ``train.csv`` row under tracker-friendly names:
    ``train/forces RMSE (meV per Å)``; a slash groups charts, so units use 'per'."""
    result = {}
    for key, value in row.items():
        if key == "epoch" or not isinstance(value, (int, float)):
            continue
        split, _, metric = key.partition(" ")
        if split in ("train", "val") and metric:
            name = f"{split}/{metric.replace('/', ' per ')}"
        else:
            name = key.replace("/", " per ")
        result[name] = float(value)
    return result


class TensorBoardLogger(TrainingObserver):
    """Event files under ``OUTPUT_DIR/tensorboard``, one scalar per metric."""

    def __init__(self, output_dir: str):
        require("tensorboard", "logging.tensorboard", "tensorboard")
        from torch.utils.tensorboard import SummaryWriter

        self.log_dir = os.path.join(output_dir, "tensorboard")
        self.writer = SummaryWriter(log_dir=self.log_dir)

    def epoch_done(self, row: dict) -> None:
        epoch = int(row["epoch"])
        for tag, value in scalars(row).items():
            self.writer.add_scalar(tag, value, epoch)
        self.writer.flush()  # a crash must not lose the epochs already logged

    def close(self) -> None:
        self.writer.close()


class WandbLogger(TrainingObserver):
    """A Weights & Biases run in ``OUTPUT_DIR/wandb`` (offline or online)."""

    def __init__(self, settings: dict, output_dir: str, options: dict):
        require("wandb", "logging.wandb", "wandb")
        import wandb

        settings = {k: v for k, v in settings.items() if v is not None}
        settings.setdefault("config", options)
        settings.setdefault("dir", output_dir)
        os.makedirs(settings["dir"], exist_ok=True)
        try:
            self.run = wandb.init(**settings)
        except Exception as error:  # no account, no network, a bad wandb.init key
            raise UserError(
                f"Weights & Biases could not start a run from the options "
                f"'logging.wandb' ({str(error).strip().splitlines()[0]}). Check "
                "the section, or set 'logging.wandb.mode: offline' to log without "
                "an account or network (sync later with 'wandb sync')."
            ) from None

    def epoch_done(self, row: dict) -> None:
        self.run.log(
            {"epoch": int(row["epoch"]), **scalars(row)}, step=int(row["epoch"])
        )

    def close(self) -> None:
        if self.run is not None:
            self.run.finish()
            self.run = None
