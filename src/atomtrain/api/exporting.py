"""Export a checkpoint to a metatomic model file."""

from __future__ import annotations

import logging
import os

from atomtrain.api.models import load_checkpoint
from atomtrain.errors import UserError
from atomtrain.export import save_exported


logger = logging.getLogger("atomtrain")


def export_checkpoint(
    checkpoint: str | os.PathLike, output: str | os.PathLike = "model.pt"
) -> str:
    """Write the checkpoint's model as an exported metatomic model (and its
    ``extensions/`` folder beside it when it needs compiled extensions);
    returns the path of the exported file."""
    checkpoint, output = os.fspath(checkpoint), os.fspath(output)
    if not output.endswith(".pt"):
        raise UserError(f"the exported model name '{output}' must end in .pt.")
    _, model, _ = load_checkpoint(checkpoint, "export")
    save_exported(model.export(), output)
    logger.info(f"exported {checkpoint} to {output}")
    return output
