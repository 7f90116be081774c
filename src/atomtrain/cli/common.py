"""Argument helpers shared by the sub-commands, so each module only says what
is particular to its command."""

from __future__ import annotations

import argparse
import re
from typing import Callable, Optional


def add_command(commands, doc: str, run: Optional[Callable]) -> argparse.ArgumentParser:
    """A sub-command described by its module's docstring, whose first line
    reads ``atomtrain NAME``: SUMMARY. (the name, and the line of ``atomtrain
    --help``) and whose other paragraphs are its own help; ``run(args)`` is
    called with the parsed arguments (None: its actions set their own)."""
    first, _, rest = doc.strip().partition("\n")
    name, summary = re.fullmatch(r"``atomtrain (\w+)``: (.*)\.", first).groups()
    description = " ".join(rest.split()) or summary
    parser = commands.add_parser(name, help=summary, description=description)
    if run is not None:
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
