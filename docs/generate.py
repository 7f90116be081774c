"""Write the generated pages of the documentation site.

- ``docs/architectures/NAME.md``: one page per architecture, rendered from its
  ``documentation.py`` by ``atomtrain.architectures.docs.render_markdown`` (the
  same page ``atomtrain arch docs NAME`` prints);
- ``docs/architectures/index.md``: the list of architectures with their stage;
- ``docs/options.md``: ``docs/options.template.md`` with one table per section
  of the options schema (``atomtrain.options.schema``) in place of the marker.

Descriptions come from ``Field(description=...)`` where the schema has one, and
from ``FALLBACK_DESCRIPTIONS`` below otherwise. A fallback entry naming a field
that no longer exists is an error, so the page cannot silently drift from the
schema. Run from anywhere: ``python docs/generate.py``.
"""

from __future__ import annotations

import inspect
import json
import os
import shutil
import sys
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

# Used where the schema field has no ``Field(description=...)``. Keys are
# "ModelName.field". Prefer moving these into the schema itself.
FALLBACK_DESCRIPTIONS = {
    "BaseOptions.architecture": "Which architecture to train and its "
    "hyperparameters. A bare name (`architecture: soap_bpnn`) is a short form.",
    "BaseOptions.training_set": "The data to train on: one dataset section or a "
    "list of them. A file name is a short form.",
    "BaseOptions.validation_set": "A fraction in [0, 1) taken at random from the "
    "training set, or dataset section(s) of its own. Used for the validation "
    "metrics, the plateau scheduler and the choice of the best model.",
    "BaseOptions.test_set": "Like `validation_set`; the test structures are "
    "evaluated with the exported model at the end of training. "
    "`validation_set + test_set` must be below 1 when both are fractions.",
    "BaseOptions.seed": "Seed of the random splits and of training. When unset a "
    "random seed is drawn and written to `options_restart.yaml`.",
    "BaseOptions.device": "`auto` (CUDA when the architecture supports it and it "
    "is available, else CPU), `cpu`, `cuda` or `cuda:N`.",
    "BaseOptions.base_precision": "Floating-point precision of training and of "
    "the exported model: 32 or 64 bits.",
    "BaseOptions.loss": "Loss per training target; see [the loss section]"
    "(#the-loss-section). Filled in for every training target.",
    "ArchitectureSection.name": "Registry name, e.g. `soap_bpnn`, "
    "`experimental.NAME`, `deprecated.NAME` or an installed plug-in "
    "(see `atomtrain arch list`).",
    "ArchitectureSection.model": "Model hyperparameters; merged over the "
    "architecture's defaults and validated against its `ModelHypers`.",
    "ArchitectureSection.training": "Trainer hyperparameters; merged over the "
    "architecture's defaults and validated against its `TrainerHypers`.",
    "DatasetSection.systems": "The file of structures. A file name is a short form.",
    "DatasetSection.targets": "Targets to read, by name. A training set needs at "
    "least one target. A key string is a short form.",
    "SystemsSection.read_from": "Path of the structure file, relative to the "
    "directory `atomtrain` runs in.",
    "SystemsSection.reader": "How the file is read: only `ase` (any format ASE "
    "reads; extended XYZ recommended).",
    "SystemsSection.length_unit": "Unit of positions and cells in the file; "
    "converted to Å on reading.",
    "TargetSection.quantity": "Physical quantity. `energy` targets are converted "
    "to eV and can have forces, stress and virial. After expansion it is "
    "`energy` for a target named `energy` and empty for other names unless set.",
    "TargetSection.read_from": "File holding the target; the expansion fills in "
    "the `systems` file.",
    "TargetSection.key": "Key of the value in the file (`info`, `arrays` or the "
    "ASE calculator results); the expansion fills in the target's name.",
    "TargetSection.unit": "Unit of the values in the file. After expansion `eV` "
    "for energy quantities, empty otherwise. Energies are converted to eV; other "
    "quantities keep this unit.",
    "TargetSection.per_atom": "One value per atom instead of one per structure.",
    "TargetSection.num_subtargets": "Number of values per structure (or per atom).",
    "TargetSection.forces": "Forces to read, or `false`. For energy targets the "
    "expansion reads the `forces` key when the file has it.",
    "TargetSection.stress": "Stress to read (3x3 or Voigt), or `false`. For "
    "energy targets the expansion reads the `stress` key when the file has it.",
    "TargetSection.virial": "Virial to read (periodic structures only), or "
    "`false`; turned into a stress. Ignored when a stress is read.",
    "GradientSection.read_from": "File holding the values; the expansion fills "
    "in the target's file.",
    "GradientSection.key": "Key of the values in the file; the expansion fills "
    "in `forces`, `stress` or `virial`.",
    "GradientSection.auto": "Set by the expansion when a gradient is read only "
    "if the file has its key; you do not normally write it.",
    "LossTerm.type": "`mse`, `mae` or `huber`.",
    "LossTerm.weight": "Weight of this term in the total loss; 0 leaves it out.",
    "LossTerm.delta": "Threshold of the Huber loss (on the normalised error).",
    "TargetLoss.type": "`mse`, `mae` or `huber`, for the target's values.",
    "TargetLoss.weight": "Weight of the target's values in the total loss.",
    "TargetLoss.delta": "Threshold of the Huber loss of the values.",
    "TargetLoss.forces": "Loss term of the forces of an energy target.",
    "TargetLoss.stress": "Loss term of the stress (or virial) of an energy target.",
}


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
    used, parts = set(), []
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
            description = field.description or FALLBACK_DESCRIPTIONS.get(key, "")
            if key in FALLBACK_DESCRIPTIONS:
                used.add(key)
            if not description:
                print(f"generate.py: no description for {key}", file=sys.stderr)
            kind = _type_name(field.annotation) + _constraints(field)
            rows.append(
                f"| `{name}` | {_cell(kind)} | {_cell(_default(field))} | "
                f"{_cell(description)} |"
            )
        parts.append("\n".join(rows))
    stale = sorted(set(FALLBACK_DESCRIPTIONS) - used)
    if stale:
        raise SystemExit(
            "generate.py: FALLBACK_DESCRIPTIONS names fields that are not in the "
            f"schema: {', '.join(stale)}"
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
