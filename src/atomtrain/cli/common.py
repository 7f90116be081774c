"""Argument helpers shared by the sub-commands, so each module only says what
is particular to its command."""

from __future__ import annotations

import argparse
from typing import Callable


def add_command(
    commands, name: str, summary: str, description: str, run: Callable
) -> argparse.ArgumentParser:
    """A sub-command: ``summary`` in ``atomtrain --help``, ``description`` in
    its own help, ``run(args)`` called with the parsed arguments."""
    parser = commands.add_parser(name, help=summary, description=description)
    parser.set_defaults(run=run)
    return parser


def add_output(parser, default: str | None, what: str) -> None:
    suffix = f" (default: {default})" if default else ""
    parser.add_argument("-o", "--output", default=default, help=what + suffix)


def add_progress_bar(parser, what: str) -> None:
    parser.add_argument(
        "--progress-bar",
        choices=("auto", "always", "never"),
        default="auto",
        help=f"{what} (auto: only on a terminal)",
    )
