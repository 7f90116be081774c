"""Run folders: where a run writes, and which earlier run ``--restart auto``
continues (the newest valid checkpoint of a run with the same options)."""

from __future__ import annotations

import datetime
import glob
import os

import yaml

from atomtrain.errors import UserError
from atomtrain.training.checkpoints import read_checkpoint


def new_run_dir(root: str = "outputs") -> str:
    """``outputs/YYYY-MM-DD/HH-MM-SS`` (with a suffix if that folder exists)."""
    base = os.path.join(root, datetime.datetime.now().strftime("%Y-%m-%d/%H-%M-%S"))
    path, n = base, 1
    while os.path.exists(path):
        path, n = f"{base}-{n}", n + 1
    return path


def _comparable(options: dict, compare_seed: bool) -> dict:
    """The options that make two runs the same run (how a run is watched, its
    ``logging`` section, does not)."""
    options = dict(options)
    options.pop("logging", None)
    if not compare_seed:
        options.pop("seed", None)
    return options


def find_resumable(
    options: dict, seed_given: bool, root: str = "outputs"
) -> tuple[str, str, dict] | None:
    """(checkpoint, run folder, that run's options) of the newest valid
    checkpoint among runs with the same options; None when there is none.

    The seed only counts when the user set it: a run with a random seed is
    continued with the seed it drew."""
    wanted = _comparable(options, seed_given)
    folders = sorted(
        glob.glob(os.path.join(root, "*", "*")), key=os.path.getmtime, reverse=True
    )
    for folder in folders:
        try:
            with open(os.path.join(folder, "options_restart.yaml")) as file:
                previous = yaml.safe_load(file)
        except (OSError, yaml.YAMLError):
            continue
        if not isinstance(previous, dict):
            continue
        if _comparable(previous, seed_given) != wanted:
            continue
        best = None
        for path in glob.glob(os.path.join(folder, "*.ckpt")):
            try:
                checkpoint = read_checkpoint(path)
            except UserError:
                continue  # truncated or foreign: skip it, keep looking
            progress = checkpoint.get("epoch_progress") or {}
            key = (checkpoint.get("epoch", 0), progress.get("step", 0))
            if best is None or key > best[0]:
                best = (key, path)
        if best is not None:
            return best[1], folder, previous
    return None
