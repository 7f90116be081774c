"""Checkpoint files: atomic writes, safe loading, and version upgrades."""

from __future__ import annotations

import os
import warnings
from typing import Any, Dict

import torch

from atomtrain.errors import UserError
from atomtrain.training.files import atomic_write


def atomic_save(obj: Any, path: str) -> None:
    """``torch.save`` through :func:`atomic_write`: a kill at any instant leaves
    the previous checkpoint intact."""
    atomic_write(path, lambda file: torch.save(obj, file))


def read_checkpoint(path: str) -> Dict[str, Any]:
    """Load a checkpoint without running code from it (``weights_only=True``)."""
    if not os.path.exists(path):
        raise UserError(f"checkpoint '{path}' does not exist.")
    try:
        with warnings.catch_warnings():
            # torch warns about TorchScript archives (an exported model.pt given
            # as a checkpoint); the error below says it in one paragraph
            warnings.simplefilter("ignore")
            checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise UserError(
            f"'{path}' is not a readable atomtrain checkpoint ({type(error).__name__}:"
            f" {str(error).splitlines()[0] if str(error) else ''}). It may be "
            "truncated or a different kind of file; exported models (.pt) cannot be "
            "used where a checkpoint (.ckpt) is expected."
        ) from None
    if not isinstance(checkpoint, dict) or "architecture_name" not in checkpoint:
        raise UserError(
            f"'{path}' is a torch file but not an atomtrain checkpoint (it has no "
            "'architecture_name'). Give a .ckpt file written by 'atomtrain train'."
        )
    return checkpoint


def upgrade_steps(
    checkpoint: Dict[str, Any], cls: type, key: str, what: str, path: str = ""
) -> Dict[str, Any]:
    """Run ``cls.upgrade_from_v{n}`` one version at a time up to the current one."""
    current = cls.__checkpoint_version__
    version = checkpoint.get(key, 1)
    path = f"'{path}' " if path else ""
    if version > current:
        raise UserError(
            f"checkpoint {path}was written by a newer {what} (checkpoint version "
            f"{version}) than the installed code knows (version {current}). "
            "Upgrade atomtrain (pip install -U atomtrain) to read it."
        )
    while version < current:
        step = getattr(cls, f"upgrade_from_v{version}", None)
        if step is None:
            raise UserError(
                f"cannot upgrade checkpoint {path}from {what} version {version} to "
                f"{current}: {cls.__qualname__} has no upgrade_from_v{version}."
            )
        checkpoint = step(checkpoint)
        version += 1
        checkpoint[key] = version
    return checkpoint
