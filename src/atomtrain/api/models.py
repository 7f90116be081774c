"""Load a model from a file: a checkpoint (``.ckpt``) through the architecture
registry, or an exported metatomic model (``.pt``) written by any tool."""

from __future__ import annotations

import os
from types import ModuleType
from typing import Optional, Tuple

from atomtrain.abc import Context, ModelInterface
from atomtrain.architectures.registry import import_architecture
from atomtrain.errors import UserError
from atomtrain.evaluation.models import load_exported
from atomtrain.training.checkpoints import atomic_save, read_checkpoint


def load_checkpoint(
    path: str, context: Context = "export", expected: Optional[str] = None
) -> Tuple[ModuleType, ModelInterface, dict]:
    """(architecture package, model, checkpoint dict) of a checkpoint file;
    ``expected`` refuses a checkpoint of another architecture."""
    checkpoint = read_checkpoint(path)
    name = checkpoint["architecture_name"]
    if expected is not None and name != expected:
        raise UserError(
            f"checkpoint '{path}' was written by architecture '{name}', but the "
            f"options ask for '{expected}'. Use a checkpoint of '{expected}' or set "
            f"architecture.name to '{name}'."
        )
    architecture = import_architecture(name)
    try:
        model = architecture.__model__.load_checkpoint(checkpoint, context)
    except UserError as error:  # e.g. a version mismatch: name the file
        raise UserError(f"cannot load checkpoint '{path}': {error}") from None
    return architecture, model, checkpoint


def load_model(path: str | os.PathLike, extensions: Optional[str] = None):
    """The model in ``path``: an in-memory atomtrain model for a checkpoint
    (``.ckpt``), a metatomic ``AtomisticModel`` for an exported file (``.pt``,
    from atomtrain, metatrain or any metatomic tool; ``extensions`` names the
    folder of compiled extensions it needs, default ``extensions/`` beside it).
    Both evaluate with :func:`atomtrain.evaluate`."""
    path = os.fspath(path)
    if path.endswith(".ckpt"):
        return load_checkpoint(path, "export")[1].eval()
    return load_exported(path, extensions)


def upgrade_checkpoint(path: str, output: Optional[str] = None) -> tuple:
    """Rewrite the checkpoint at ``path`` (into ``output``, default in place)
    at the installed checkpoint versions, running the architecture's upgrades;
    returns the (model, trainer) versions before and after."""
    checkpoint = read_checkpoint(path)
    architecture = import_architecture(checkpoint["architecture_name"])
    before = (
        checkpoint.get("model_ckpt_version", 1),
        checkpoint.get("trainer_ckpt_version", 1),
    )
    checkpoint = architecture.__model__.upgrade_checkpoint(checkpoint)
    checkpoint = architecture.__trainer__.upgrade_checkpoint(checkpoint)
    after = (checkpoint["model_ckpt_version"], checkpoint["trainer_ckpt_version"])
    atomic_save(checkpoint, output or path)
    return before, after
