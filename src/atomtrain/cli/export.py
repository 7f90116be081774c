"""``atomtrain export``: turn a checkpoint into a metatomic model file."""

from __future__ import annotations

import logging

from atomtrain.architectures.registry import import_architecture
from atomtrain.errors import UserError
from atomtrain.export import save_exported
from atomtrain.training.checkpoints import read_checkpoint


logger = logging.getLogger("atomtrain")


def add_parser(commands) -> None:
    parser = commands.add_parser(
        "export",
        help="export a checkpoint to a metatomic model (model.pt)",
        description="Turn a checkpoint (.ckpt) into a metatomic AtomisticModel file "
        "that runs in ASE, LAMMPS, i-PI and TorchSim.",
    )
    parser.add_argument("checkpoint", help="checkpoint written by 'atomtrain train'")
    parser.add_argument(
        "-o",
        "--output",
        default="model.pt",
        help="exported model file (default: model.pt)",
    )
    parser.set_defaults(run=run)


def load_model(path: str, context: str, expected: str | None = None):
    """Model class and instance from a checkpoint file."""
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


def export_checkpoint(path: str, output: str) -> None:
    _, model, _ = load_model(path, "export")
    save_exported(model.export(), output)
    logger.info(f"exported {path} to {output}")


def run(args) -> int:
    if not args.output.endswith(".pt"):
        raise UserError(f"the exported model name '{args.output}' must end in .pt.")
    export_checkpoint(args.checkpoint, args.output)
    return 0
