"""Render an architecture's documentation page from its ``documentation.py``.

Only ``documentation.py`` is loaded (never the model code), so pages build
without the architecture's extras. Field descriptions are the string literals
that follow each annotated field, read from the source with ``ast``.
"""

from __future__ import annotations

import ast
import inspect
import textwrap
import typing

import typing_extensions
import yaml

from atomtrain.architectures.hypers import defaults_of, is_typed, typed_default
from atomtrain.architectures.registry import find_architecture, import_documentation
from atomtrain.architectures.stages import install_hint


def field_docstrings(cls) -> dict[str, str]:
    """``{field: docstring}`` of a hypers class and its TypedDict bases."""
    docs: dict[str, str] = {}
    for base in getattr(cls, "__orig_bases__", ()):
        if is_typed(base):
            docs.update(field_docstrings(base))
    try:
        source = textwrap.dedent(inspect.getsource(cls))
    except (OSError, TypeError):
        return docs
    (node,) = ast.parse(source).body
    body = node.body
    for statement, following in zip(body, body[1:] + [None]):
        if isinstance(statement, (ast.AnnAssign, ast.Assign)):
            target = (
                statement.target
                if isinstance(statement, ast.AnnAssign)
                else statement.targets[0]
            )
            if (
                isinstance(target, ast.Name)
                and isinstance(following, ast.Expr)
                and isinstance(following.value, ast.Constant)
                and isinstance(following.value.value, str)
            ):
                docs[target.id] = inspect.cleandoc(following.value.value)
    return docs


def type_name(annotation) -> str:
    origin = typing.get_origin(annotation)
    if origin is typing.Literal or origin is typing_extensions.Literal:
        return " | ".join(repr(a) for a in typing.get_args(annotation))
    if origin is typing.Union:
        return " | ".join(type_name(a) for a in typing.get_args(annotation))
    if origin is not None:
        args = ", ".join(type_name(a) for a in typing.get_args(annotation))
        return f"{getattr(origin, '__name__', str(origin))}[{args}]"
    if annotation is type(None):
        return "None"
    return getattr(annotation, "__name__", str(annotation))


def hyper_rows(cls, prefix: str = "") -> list[tuple[str, str, str, str]]:
    """(name, type, default, description) for every field, nested ones dotted."""
    rows = []
    if not is_typed(cls):
        for name, default in defaults_of(cls).items():
            rows.append((prefix + name, type(default).__name__, repr(default), ""))
        return rows
    docs = field_docstrings(cls)
    for name, annotation in typing.get_type_hints(cls).items():
        default = typed_default(cls, name)
        if is_typed(annotation):
            rows.append(
                (prefix + name, annotation.__name__, "see below", docs.get(name, ""))
            )
            rows.extend(hyper_rows(annotation, f"{prefix}{name}."))
        else:
            rows.append(
                (
                    prefix + name,
                    type_name(annotation),
                    repr(default),
                    docs.get(name, ""),
                )
            )
    return rows


def _title_and_description(documentation) -> tuple[str, str]:
    lines = inspect.cleandoc(documentation.__doc__ or "").splitlines()
    if len(lines) >= 2 and set(lines[1]) == {"="}:
        return lines[0].strip(), "\n".join(lines[2:]).strip()
    return "", "\n".join(lines).strip()


def render_markdown(name: str) -> str:
    """The documentation page of architecture ``name`` as Markdown."""
    documentation = import_documentation(name)
    spec = find_architecture(name)
    title, description = _title_and_description(documentation)
    defaults = {
        "architecture": {
            "name": name,
            "model": defaults_of(documentation.ModelHypers),
            "training": {
                k: v
                for k, v in defaults_of(documentation.TrainerHypers).items()
                if k != "loss"
            },
        }
    }
    parts = [
        f"# {title or name}",
        f"Registry name `{name}`, stage **{spec.stage}**, {spec.source}.",
        description,
        "## Installation",
        f"```bash\n{install_hint(spec)}\n```",
        "## Default hyperparameters",
        "Paste into `options.yaml` and edit what you need:",
        "```yaml\n" + yaml.safe_dump(defaults, sort_keys=False).rstrip() + "\n```",
    ]
    for heading, cls in (
        ("Model hyperparameters", documentation.ModelHypers),
        ("Trainer hyperparameters", documentation.TrainerHypers),
    ):
        parts += [f"## {heading}", _table(hyper_rows(cls))]
    return "\n\n".join(p for p in parts if p) + "\n"


def _table(rows) -> str:
    def cell(text: str) -> str:
        return " ".join(str(text).split()).replace("|", "\\|")

    lines = ["| name | type | default | description |", "|---|---|---|---|"]
    lines += [
        f"| `{name}` | {cell(kind)} | `{cell(default)}` | {cell(doc)} |"
        for name, kind, default, doc in rows
    ]
    return "\n".join(lines)
