"""``atomtrain arch new NAME``: scaffold a working experimental architecture.

The generated architecture (a per-element network on a radial descriptor) passes
``atomtrain arch check`` and the conformance suite as generated; authors then
replace the model with theirs. Templates live in ``scaffold_templates/*.txt``.
"""

from __future__ import annotations

import json
import keyword
import logging
import os
import subprocess
import sys
from typing import Dict, Optional

from atomtrain.architectures.maintainers import (
    Maintainer,
    ask_maintainer,
    from_git_config,
    parse_maintainer,
)
from atomtrain.errors import UserError


logger = logging.getLogger("atomtrain")
# written when no maintainer is known: 'arch check' refuses it until replaced
PLACEHOLDER: Maintainer = ("Your Name", "you@example.com")


TEMPLATES = os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "scaffold_templates"
)
EXPERIMENTAL = os.path.join(os.path.dirname(os.path.abspath(__file__)), "experimental")

PYPROJECT = """\
[build-system]
requires = ["setuptools>=68"]
build-backend = "setuptools.build_meta"

[project]
name = "atomtrain-{name}"
version = "0.1.0"
description = "{title}: an atomtrain architecture"
requires-python = ">=3.10"
authors = [{{ {author} }}]
dependencies = ["atomtrain"]

[project.optional-dependencies]
test = ["pytest", "ruff"]

[project.entry-points."atomtrain.architectures"]
{name} = "{package}"

[tool.setuptools.packages.find]
where = ["src"]

[tool.setuptools.package-data]
{package} = ["tests/checkpoints/*"]

# atomtrain's lint settings: 'atomtrain arch check' lints with them
[tool.ruff]
line-length = 88
target-version = "py310"

[tool.ruff.lint]
select = ["E", "F", "W", "I", "B", "UP", "TID"]
ignore = ["UP007", "UP006", "UP035", "UP045", "UP037", "B905", "E741"]

[tool.ruff.lint.isort]
known-first-party = ["atomtrain", "{package}"]
lines-after-imports = 2

[tool.ruff.lint.flake8-tidy-imports]
ban-relative-imports = "all"
"""

README = """\
# atomtrain-{name}

An experimental [atomtrain](https://github.com/atomtrain) architecture, registered
as `experimental.{name}` through the `atomtrain.architectures` entry point.

```bash
pip install -e .
atomtrain arch list             # shows experimental.{name}
atomtrain arch check experimental.{name}
pytest tests                    # the atomtrain conformance suite
```
"""


def _camel(name: str) -> str:
    return "".join(part[:1].upper() + part[1:] for part in name.split("_") if part)


def _render(template: str, values: Dict[str, str]) -> str:
    with open(os.path.join(TEMPLATES, template)) as file:
        text = file.read()
    for key, value in values.items():
        text = text.replace("{{" + key + "}}", value)
    return _sort_first_party(text)


def _sort_first_party(text: str) -> str:
    """Sort the block of ``from atomtrain... import`` lines (whose position
    depends on the package name) the way ruff's isort does."""
    lines = text.split("\n")
    block = [i for i, line in enumerate(lines) if line.startswith("from atomtrain")]
    if not block or block != list(range(block[0], block[-1] + 1)):
        return text
    ordered = sorted((lines[i] for i in block), key=lambda s: s.split()[1].lower())
    lines[block[0] : block[-1] + 1] = ordered
    return "\n".join(lines)


def _check_name(name: str) -> None:
    if not name.isidentifier() or keyword.iskeyword(name) or name.startswith("_"):
        raise UserError(
            f"'{name}' is not a valid architecture name: use a Python identifier "
            "in lower case, e.g. 'my_model' (letters, digits and underscores, not "
            "starting with a digit or an underscore)."
        )
    if name != name.lower():
        raise UserError(
            f"architecture name '{name}' has upper-case letters; use lower case "
            f"('{name.lower()}') as for Python modules."
        )


def _write(path: str, text: str) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as file:
        file.write(text)


def _python_pair(maintainer: Maintainer) -> str:
    """``("Name", "contact")`` as Python source (JSON strings are valid Python)."""
    return "(" + ", ".join(json.dumps(s, ensure_ascii=False) for s in maintainer) + ")"


def _toml_author(maintainer: Maintainer) -> str:
    """The ``authors`` entry of pyproject.toml: an @handle is not an email."""
    name, contact = (json.dumps(s, ensure_ascii=False) for s in maintainer)
    if maintainer[1].startswith("@"):
        return f"name = {name}"
    return f"name = {name}, email = {contact}"


def choose_maintainer(option: Optional[str], interactive: bool) -> Optional[Maintainer]:
    """The maintainer of a new architecture: ``--maintainer`` when given, else
    asked for on a terminal (Enter keeps git's ``user.name <user.email>``), else
    git's configuration when it is a real contact; None when nothing is known."""
    if option is not None:
        return parse_maintainer(option)
    default = from_git_config()
    if default is not None:
        try:
            parse_maintainer(default, "git config user.name/user.email")
        except UserError:
            default = None  # a placeholder address is no default
    if interactive:
        return ask_maintainer(default)
    return parse_maintainer(default) if default else None


def _files(
    name: str, package: str, registry_name: str, maintainer: Maintainer
) -> Dict[str, str]:
    """Relative path in the package folder -> content."""
    title = name.replace("_", " ").title().replace(" ", "-")
    values = {
        "maintainer": _python_pair(maintainer),
        "name": name,
        "package": package,
        "Class": _camel(name),
        "title": title,
        "underline": "=" * len(title),
        "registry_name": registry_name,
    }
    return {
        f"{module}.py": _render(f"{module}.py.txt", values)
        for module in ("__init__", "documentation", "model", "trainer")
    } | {"test": _render("test.py.txt", values)}


def _format(paths: list[str], config: list[str]) -> None:
    """Best effort: let ruff fix import order and wrap long lines (names longer
    than the templates assume); the templates are already clean without it."""
    ruff = [sys.executable, "-m", "ruff"]
    for command in (["check", "--fix", "--select", "I"], ["format"]):
        try:
            subprocess.run(
                [*ruff, *command, "--no-cache", "--quiet", *config, *paths],
                capture_output=True,
                timeout=60,
            )
        except (OSError, subprocess.SubprocessError):
            return


def scaffold(
    name: str,
    dir: Optional[str] = None,
    plugin: bool = False,
    maintainer: Optional[Maintainer] = None,
) -> str:
    """Create architecture ``name``; returns the folder created.

    In-tree (default): ``src/atomtrain/architectures/experimental/NAME`` (or
    ``DIR/NAME``), registry name ``experimental.NAME``. With ``plugin``: a pip
    package ``DIR/atomtrain-NAME`` (default: the current folder) with an
    ``atomtrain.architectures`` entry point. ``maintainer`` is ``(name,
    contact)``; without it a placeholder is written, which ``arch check``
    refuses until it is replaced.
    """
    from atomtrain.architectures.check import ruff_arguments

    _check_name(name)
    if maintainer is None:
        maintainer = PLACEHOLDER
        logger.warning(
            f"no maintainer given for '{name}': __maintainers__ holds the "
            f"placeholder {PLACEHOLDER}, which 'atomtrain arch check' refuses. "
            "Replace it, or pass --maintainer 'Name <email>' to 'arch new'."
        )
    else:
        maintainer = parse_maintainer(f"{maintainer[0]} <{maintainer[1]}>")
    if plugin:
        root = os.path.join(os.path.abspath(dir or os.getcwd()), f"atomtrain-{name}")
        package = f"atomtrain_{name}"
        folder = os.path.join(root, "src", package)
        test_path = os.path.join(root, "tests", f"test_{name}.py")
    else:
        parent = os.path.abspath(dir or EXPERIMENTAL)
        root = folder = os.path.join(parent, name)
        in_tree = (
            os.path.samefile(parent, EXPERIMENTAL) if os.path.isdir(parent) else False
        )
        package = f"atomtrain.architectures.experimental.{name}" if in_tree else name
        test_path = os.path.join(folder, "tests", f"test_{name}.py")
    if os.path.exists(root):
        raise UserError(
            f"'{root}' already exists; choose another name or --dir, or remove it."
        )
    files = _files(name, package, f"experimental.{name}", maintainer)
    written = []
    try:
        for relative, text in files.items():
            path = test_path if relative == "test" else os.path.join(folder, relative)
            _write(path, text)
            written.append(path)
        if plugin:
            title = files["documentation.py"].split("\n")[1]
            values = {
                "name": name,
                "package": package,
                "title": title,
                "author": _toml_author(maintainer),
            }
            _write(os.path.join(root, "pyproject.toml"), PYPROJECT.format(**values))
            _write(os.path.join(root, "README.md"), README.format(**values))
    except OSError as error:
        raise UserError(f"cannot write the architecture into {root}: {error}") from None
    _format(written, ruff_arguments(folder, package))
    return root
