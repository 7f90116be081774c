"""The ``atomtrain`` command: one module per sub-command."""

from __future__ import annotations

import argparse
import logging
import sys
import traceback
import warnings

from atomtrain import __version__
from atomtrain.errors import UserError


def build_parser() -> argparse.ArgumentParser:
    from atomtrain.cli import arch as arch_command
    from atomtrain.cli import data as data_command
    from atomtrain.cli import eval as eval_command
    from atomtrain.cli import export as export_command
    from atomtrain.cli import train as train_command
    from atomtrain.cli import upgrade as upgrade_command

    parser = argparse.ArgumentParser(
        prog="atomtrain",
        description="Train, evaluate and export machine-learning models of "
        "atomistic systems.",
    )
    parser.add_argument(
        "--version", action="version", version=f"atomtrain {__version__}"
    )
    parser.add_argument(
        "--debug", action="store_true", help="show full tracebacks for errors"
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands_in_order = (
        train_command,
        eval_command,
        export_command,
        arch_command,
        upgrade_command,
        data_command,
    )
    for module in commands_in_order:
        module.add_parser(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 1
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stdout)
    # basicConfig does nothing when logging is already configured (main() called
    # from Python, e.g. in tests); the run's train.log must still get INFO lines
    logging.getLogger("atomtrain").setLevel(logging.INFO)
    warnings.filterwarnings("ignore", message=".*MetatomicCalculator.*")
    try:
        return args.run(args) or 0
    except UserError as error:
        if args.debug:
            traceback.print_exc()
        print(f"atomtrain {args.command}: error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"atomtrain {args.command}: interrupted", file=sys.stderr)
        return 130
