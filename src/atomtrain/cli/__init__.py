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
    from atomtrain.cli import calibrate as calibrate_command
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
        calibrate_command,
        arch_command,
        upgrade_command,
        data_command,
    )
    for module in commands_in_order:
        module.add_parser(commands)
    return parser


def keep_freed_memory() -> None:
    """Ask glibc to keep freed memory instead of returning it after each step:
    training allocates the same large tensors every step, and giving them back
    cost a third of the CPU time in page faults (SOAP-BPNN on water: 19.5 ->
    12.1 s/epoch, peak memory +4 %). No effect outside Linux/glibc."""
    import ctypes
    import sys

    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(-4, 0)  # M_MMAP_MAX: no mmap for large blocks
        libc.mallopt(-1, 1 << 30)  # M_TRIM_THRESHOLD: keep up to 1 GiB
    except (OSError, AttributeError):
        pass


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if argv is None:  # the command line, not a call from Python (tests, scripts)
        keep_freed_memory()
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
