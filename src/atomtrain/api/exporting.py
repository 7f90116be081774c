"""Export a checkpoint to a metatomic model file."""

from __future__ import annotations

import logging
import os

from atomtrain.api.models import load_checkpoint
from atomtrain.errors import UserError
from atomtrain.export import save_exported, with_d3


logger = logging.getLogger("atomtrain")


def export_checkpoint(
    checkpoint: str | os.PathLike,
    output: str | os.PathLike = "model.pt",
    d3: str | None = None,
) -> str:
    """Write the checkpoint's model as an exported metatomic model (and its
    ``extensions/`` folder beside it when it needs compiled extensions);
    returns the path of the exported file. ``d3`` names a density functional
    whose D3(BJ) dispersion is added to the energy (metatomic's DFTD3)."""
    checkpoint, output = os.fspath(checkpoint), os.fspath(output)
    if not output.endswith(".pt"):
        raise UserError(f"the exported model name '{output}' must end in .pt.")
    _, model, _ = load_checkpoint(checkpoint, "export")
    exported = model.export()
    if d3 is not None:
        exported = with_d3(exported, d3)
    save_exported(exported, output)
    logger.info(f"exported {checkpoint} to {output}")
    return output
