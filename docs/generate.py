"""Write the generated pages of the documentation site.

- ``docs/architectures/NAME.md``: one page per architecture, rendered from its
  ``documentation.py`` by ``atomtrain.architectures.docs.render_markdown`` (the
  same page ``atomtrain arch docs NAME`` prints);
- ``docs/architectures/index.md``: the list of architectures with their stage;
- ``docs/options.md``: ``docs/options.template.md`` with one table per section
  of the options schema (``atomtrain.options.schema``) in place of the marker.

Descriptions come from the schema's ``Field(description=...)``; a field without
one is an error, so the page cannot drift from the schema. Run from anywhere:
``python docs/generate.py``.
"""

from __future__ import annotations

import inspect
import json
import os
import shutil
import typing

import pydantic
from pydantic_core import PydanticUndefined

from atomtrain.architectures.docs import render_markdown
from atomtrain.architectures.registry import all_architectures, import_documentation
from atomtrain.architectures.stages import describe
from atomtrain.options import schema


DOCS = os.path.dirname(os.path.abspath(__file__))
MARKER = "<!-- generated: schema tables -->"
ROOT_MODEL = schema.BaseOptions


# ---------------------------------------------------------------- schema tables
def _models(root: type) -> list[type]:
    """Every pydantic model reachable from ``root``, breadth first."""
    found, queue = [], [root]
    while queue:
        model = queue.pop(0)
        if model in found:
            continue
        found.append(model)
        for field in model.model_fields.values():
            queue.extend(_nested_models(field.annotation))
    return found


def _nested_models(annotation) -> list[type]:
    if isinstance(annotation, type) and issubclass(annotation, pydantic.BaseModel):
        return [annotation]
    return [m for a in typing.get_args(annotation) for m in _nested_models(a)]


def _type_name(annotation) -> str:
    if typing.get_origin(annotation) is typing.Annotated:  # tagged union members
        return _type_name(typing.get_args(annotation)[0])
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is typing.Union:
        return " or ".join(_type_name(a) for a in args if a is not type(None)) + (
            " or null" if type(None) in args else ""
        )
    if origin is typing.Literal:
        return " or ".join(f"`{_value(a)}`" for a in args)
    if origin in (list, tuple):
        return f"list of {_type_name(args[0])}"
    if origin is dict:
        return f"mapping of {_type_name(args[0])} to {_type_name(args[1])}"
    if isinstance(annotation, type) and issubclass(annotation, pydantic.BaseModel):
        return f"[{annotation.__name__}](#{annotation.__name__.lower()})"
    if annotation is dict:
        return "mapping"
    return getattr(annotation, "__name__", str(annotation))


def _constraints(field) -> str:
    symbols = {"ge": "≥", "gt": ">", "le": "≤", "lt": "<"}
    parts = []
    for item in field.metadata:
        for attribute, symbol in symbols.items():
            value = getattr(item, attribute, None)
            if value is not None:
                parts.append(f"{symbol} {value}")
    return f" ({', '.join(parts)})" if parts else ""


def _value(value) -> str:
    if isinstance(value, pydantic.BaseModel):
        value = value.model_dump()
    if isinstance(value, str) and value:
        return value
    return json.dumps(value)


def _default(field) -> str:
    if field.default_factory is not None:
        return f"`{_value(field.default_factory())}`"
    if field.default is PydanticUndefined:
        return "required"
    return f"`{_value(field.default)}`"


def _cell(text: str) -> str:
    return " ".join(str(text).split()).replace("|", "\\|")


def schema_tables() -> str:
    parts, missing = [], []
    for model in _models(ROOT_MODEL):
        summary = inspect.getdoc(model) if model.__doc__ else ""
        parts.append(f"### {model.__name__}")
        if summary:
            parts.append(summary)
        rows = [
            "| field | type | default | description |",
            "|---|---|---|---|",
        ]
        for name, field in model.model_fields.items():
            key = f"{model.__name__}.{name}"
            description = field.description or ""
            if not description:
                missing.append(key)
            kind = _type_name(field.annotation) + _constraints(field)
            rows.append(
                f"| `{name}` | {_cell(kind)} | {_cell(_default(field))} | "
                f"{_cell(description)} |"
            )
        parts.append("\n".join(rows))
    if missing:
        raise SystemExit(
            "generate.py: give these schema fields a Field(description=...): "
            + ", ".join(missing)
        )
    return "\n\n".join(parts)


def write_options() -> None:
    with open(os.path.join(DOCS, "options.template.md")) as file:
        template = file.read()
    if MARKER not in template:
        raise SystemExit(f"generate.py: options.template.md lacks '{MARKER}'")
    header = (
        "<!-- Generated by docs/generate.py from docs/options.template.md and "
        "src/atomtrain/options/schema.py: edit those, not this file. -->\n\n"
    )
    page = header + template.replace(MARKER, schema_tables())
    with open(os.path.join(DOCS, "options.md"), "w") as file:
        file.write(page)


# ---------------------------------------------------------------- architectures
def _title(name: str) -> str:
    lines = inspect.cleandoc(import_documentation(name).__doc__ or "").splitlines()
    if len(lines) >= 2 and set(lines[1]) == {"="}:
        return lines[0].strip()
    return name


def write_architectures() -> None:
    folder = os.path.join(DOCS, "architectures")
    shutil.rmtree(folder, ignore_errors=True)  # no stale pages of removed ones
    os.makedirs(folder)
    specs = all_architectures()
    rows = [
        "| name | title | stage | maintainers | source |",
        "|---|---|---|---|---|",
    ]
    for name in sorted(specs):
        with open(os.path.join(folder, f"{name}.md"), "w") as file:
            file.write(render_markdown(name))
        _, stage, maintainers, _, source = describe(specs[name])
        rows.append(
            f"| [`{name}`]({name}.md) | {_cell(_title(name))} | {_cell(stage)} | "
            f"{_cell(maintainers)} | {_cell(source)} |"
        )
    index = [
        "<!-- Generated by docs/generate.py: edit the architectures' "
        "documentation.py, not this file. -->",
        "# Architectures",
        "Every model family is an *architecture*. These pages are rendered from "
        "each architecture's `documentation.py`, exactly like "
        "`atomtrain arch docs NAME`; `atomtrain arch list` shows the same list "
        "on your installation, including plug-ins and whether their dependencies "
        "are installed.",
        "\n".join(rows),
        "Stages: **stable** architectures are used without warnings; "
        "**experimental** ones (name `experimental.NAME`) warn that their API, "
        "checkpoints and defaults may change; **deprecated** ones (name "
        "`deprecated.NAME`) warn with their removal date and are refused after "
        "it. See [Adding an architecture](../adding-an-architecture.md#life-cycle).",
    ]
    with open(os.path.join(folder, "index.md"), "w") as file:
        file.write("\n\n".join(index) + "\n")


if __name__ == "__main__":
    write_architectures()
    write_options()
    print(f"generate.py: wrote {os.path.join(DOCS, 'architectures')}/ and options.md")
