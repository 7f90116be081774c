"""``atomtrain upgrade``: rewrite an old checkpoint at the current versions."""

from __future__ import annotations

import logging

from atomtrain.architectures.registry import import_architecture
from atomtrain.training.checkpoints import atomic_save, read_checkpoint


logger = logging.getLogger("atomtrain")


def add_parser(commands) -> None:
    parser = commands.add_parser(
        "upgrade",
        help="rewrite a checkpoint at the installed checkpoint versions",
        description="Run the architecture's checkpoint upgrades (model and "
        "trainer) and write the result, in place unless -o names another file.",
    )
    parser.add_argument("checkpoint", help="checkpoint (.ckpt) to upgrade")
    parser.add_argument(
        "-o", "--output", default=None, help="output file (default: CHECKPOINT)"
    )
    parser.set_defaults(run=run)


def run(args) -> int:
    checkpoint = read_checkpoint(args.checkpoint)
    architecture = import_architecture(checkpoint["architecture_name"])
    before = (
        checkpoint.get("model_ckpt_version", 1),
        checkpoint.get("trainer_ckpt_version", 1),
    )
    checkpoint = architecture.__model__.upgrade_checkpoint(checkpoint)
    checkpoint = architecture.__trainer__.upgrade_checkpoint(checkpoint)
    after = (checkpoint["model_ckpt_version"], checkpoint["trainer_ckpt_version"])
    output = args.output or args.checkpoint
    atomic_save(checkpoint, output)
    logger.info(
        f"upgraded {args.checkpoint} (model v{before[0]} -> v{after[0]}, trainer "
        f"v{before[1]} -> v{after[1]}) into {output}"
    )
    return 0
