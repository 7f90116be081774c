"""``atomtrain arch``: list, document, check and scaffold architectures."""

from __future__ import annotations

import os
import sys

from atomtrain.errors import UserError


def add_parser(commands) -> None:
    parser = commands.add_parser(
        "arch",
        help="list, document, check and create architectures",
        description="Tools for architecture authors and users.",
    )
    actions = parser.add_subparsers(dest="action", metavar="ACTION")

    listing = actions.add_parser("list", help="every architecture with its stage")
    listing.set_defaults(run=run_list)

    docs = actions.add_parser("docs", help="render an architecture's doc page")
    docs.add_argument("name", nargs="?", help="architecture (default: all with -o)")
    docs.add_argument("-o", "--output-dir", help="write NAME.md pages into this folder")
    docs.set_defaults(run=run_docs)

    check = actions.add_parser(
        "check", help="check the criteria of an architecture's life-cycle stage"
    )
    check.add_argument("name")
    check.set_defaults(run=run_check)

    new = actions.add_parser("new", help="scaffold a working experimental architecture")
    new.add_argument("name", help="python identifier of the new architecture")
    new.add_argument(
        "--dir",
        default=None,
        help="where to create it (default: in-tree experimental/, or "
        "the current folder with --plugin)",
    )
    new.add_argument(
        "--plugin",
        action="store_true",
        help="create a stand-alone pip package with an entry point",
    )
    new.add_argument(
        "--maintainer",
        metavar="'NAME <EMAIL>'",
        help="who maintains it (an email or an @handle); default: asked on a "
        "terminal, else git's user.name <user.email>",
    )
    new.set_defaults(run=run_new)

    def show_help(args) -> int:
        parser.print_help()
        return 1

    parser.set_defaults(run=show_help)


def run_list(args) -> int:
    from atomtrain.architectures.registry import all_architectures
    from atomtrain.architectures.stages import describe

    rows = [describe(spec) for spec in all_architectures().values()]
    header = ("name", "stage", "maintainers", "dependencies", "source")
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(5)]
    for row in [header, *rows]:
        print("  ".join(str(c).ljust(w) for c, w in zip(row, widths)).rstrip())
    return 0


def run_docs(args) -> int:
    from atomtrain.architectures.docs import render_markdown
    from atomtrain.architectures.registry import all_architectures

    if args.name is None and args.output_dir is None:
        raise UserError("give an architecture name, or -o DIR to render them all.")
    names = [args.name] if args.name else sorted(all_architectures())
    for name in names:
        page = render_markdown(name)
        if args.output_dir is None:
            sys.stdout.write(page)
            continue
        os.makedirs(args.output_dir, exist_ok=True)
        with open(os.path.join(args.output_dir, f"{name}.md"), "w") as file:
            file.write(page)
    return 0


def run_check(args) -> int:
    from atomtrain.architectures.check import check_architecture

    report = check_architecture(args.name)
    print(report.render())
    return 0 if report.passed else 1


def run_new(args) -> int:
    from atomtrain.architectures.scaffold import choose_maintainer, scaffold

    maintainer = choose_maintainer(args.maintainer, sys.stdin.isatty())
    path = scaffold(args.name, args.dir, args.plugin, maintainer)
    print(f"created architecture '{args.name}' in {path}")
    return 0
