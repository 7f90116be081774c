"""``atomtrain train``: train a model.

Train a model described by an options file; writes outputs/DATE/TIME/ and
model.ckpt, model.pt here.
"""

from __future__ import annotations

import logging

from atomtrain.api.training import train
from atomtrain.cli.common import add_command
from atomtrain.training.loop import TrainingStopped


logger = logging.getLogger("atomtrain")
EXIT_STOPPED = 75  # EX_TEMPFAIL: stopped on a signal, resumable with --restart


def add_parser(commands) -> None:
    parser = add_command(commands, __doc__, run)
    parser.add_argument("options", help="options file (YAML)")
    parser.add_argument(
        "-o",
        "--override",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override an option, e.g. architecture.training.num_epochs=5 (repeatable)",
    )
    parser.add_argument(
        "--restart",
        metavar="CHECKPOINT",
        help="continue from a checkpoint, or 'auto' for the newest "
        "checkpoint under outputs/ (starts afresh when there is none)",
    )
    parser.add_argument(
        "--output-dir",
        default=None,
        help="run folder (default: outputs/YYYY-MM-DD/HH-MM-SS)",
    )


def run(args) -> int:
    try:
        train(
            args.options,
            args.override,
            restart=args.restart,
            output_dir=args.output_dir,
        )
    except TrainingStopped as stopped:
        logger.warning(str(stopped))
        return EXIT_STOPPED
    return 0
