"""Imports run one way (DESIGN.md §6): the command line over the Python API over
the architectures over training and evaluation over the rest. Checked on the
source text (ast), imports inside functions included, so that it cannot regress
unnoticed."""

import ast
import os

import pytest


SRC = os.path.join(os.path.dirname(__file__), "..", "src", "atomtrain")
LOW_LAYERS = ("training", "evaluation", "data", "nn")
ABOVE_THEM = ("atomtrain.cli", "atomtrain.api", "atomtrain.architectures")


def imports_of(path: str) -> set[str]:
    """Every atomtrain module named by an import statement of the file."""
    with open(path) as file:
        tree = ast.parse(file.read(), path)
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return {name for name in found if name.split(".")[0] == "atomtrain"}


def sources(package: str = "") -> list[str]:
    root = os.path.join(SRC, package)
    return sorted(
        os.path.join(folder, name)
        for folder, _, names in os.walk(root)
        for name in names
        if name.endswith(".py")
    )


def offending(paths: list[str], forbidden: tuple[str, ...]) -> list[str]:
    """``"FILE imports MODULE"`` for each import of a forbidden package."""
    return [
        f"{os.path.relpath(path, SRC)} imports {name}"
        for path in paths
        for name in sorted(imports_of(path))
        if any(name == f or name.startswith(f + ".") for f in forbidden)
    ]


@pytest.mark.parametrize("layer", LOW_LAYERS)
def test_lower_layers_never_import_the_registry_api_or_cli(layer):
    assert offending(sources(layer), ABOVE_THEM) == []


def test_only_the_command_line_imports_the_command_line():
    paths = [
        p
        for p in sources()
        if not p.startswith(os.path.join(SRC, "cli"))
        and os.path.basename(p) != "__main__.py"
    ]
    assert offending(paths, ("atomtrain.cli",)) == []


def test_checkpoint_and_export_code_below_the_registry():
    low = [os.path.join(SRC, name) for name in ("abc.py", "export.py")]
    assert offending(low, ABOVE_THEM) == []


def test_the_check_sees_a_forbidden_import(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text(
        "def f():\n    from atomtrain.cli.eval import run\n"
        "import atomtrain.architectures.registry\n"
        "from atomtrain import errors\n"
        "import atomtrain.api_helpers\n"
    )
    found = [line.split(" imports ")[1] for line in offending([str(bad)], ABOVE_THEM)]
    assert found == [
        "atomtrain.architectures.registry",
        "atomtrain.cli.eval",
        "atomtrain.cli.eval.run",
    ]
