"""``atomtrain upgrade``: rewrite a checkpoint at the installed checkpoint versions.

Run the architecture's checkpoint upgrades (model and trainer) and write the
result, in place unless -o names another file.
"""

from __future__ import annotations

import logging

from atomtrain.api.models import upgrade_checkpoint
from atomtrain.cli.common import add_command, add_output


logger = logging.getLogger("atomtrain")


def add_parser(commands) -> None:
    parser = add_command(commands, __doc__, run)
    parser.add_argument("checkpoint", help="checkpoint (.ckpt) to upgrade")
    add_output(parser, None, "output file (default: CHECKPOINT)")


def run(args) -> int:
    output = args.output or args.checkpoint
    before, after = upgrade_checkpoint(args.checkpoint, output)
    logger.info(
        f"upgraded {args.checkpoint} (model v{before[0]} -> v{after[0]}, trainer "
        f"v{before[1]} -> v{after[1]}) into {output}"
    )
    return 0
