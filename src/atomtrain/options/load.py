"""From an options file and ``-o`` overrides to a validated, fully expanded dict."""

from __future__ import annotations

import copy
import os
import random
from typing import Any

import yaml

from atomtrain.architectures.hypers import resolve_hypers
from atomtrain.architectures.registry import import_documentation
from atomtrain.errors import UserError
from atomtrain.options.expand import expand_dataset, expand_loss
from atomtrain.options.schema import BaseOptions
from atomtrain.options.validation import validate


def read_yaml(path: str) -> dict:
    if not os.path.exists(path):
        raise UserError(f"options file '{path}' does not exist.")
    try:
        with open(path) as file:
            data = yaml.safe_load(file)
    except yaml.YAMLError as error:
        raise UserError(f"options file '{path}' is not valid YAML: {error}") from None
    if not isinstance(data, dict):
        raise UserError(
            f"options file '{path}' must contain a mapping of options (such as "
            f"'architecture:' and 'training_set:'), got {type(data).__name__}."
        )
    return data


def apply_overrides(options: dict, overrides: list[str]) -> dict:
    """Apply ``key.path=value`` overrides; values are parsed as YAML."""
    options = copy.deepcopy(options)
    for override in overrides:
        if "=" not in override:
            raise UserError(
                f"override '{override}' must look like 'key.path=value', e.g. "
                "'architecture.training.num_epochs=5'."
            )
        path, raw = override.split("=", 1)
        try:
            value = yaml.safe_load(raw)
        except yaml.YAMLError:
            value = raw
        node = options
        keys = path.strip().split(".")
        for key in keys[:-1]:
            child = node.get(key)
            if child is None:
                child = node[key] = {}
            if not isinstance(child, dict):
                raise UserError(
                    f"override '{override}': '{key}' is not a section (it is "
                    f"{child!r}), so it has no key '{keys[-1]}'."
                )
            node = child
        node[keys[-1]] = value
    return options


def _datasets(section: Any) -> list:
    sections = section if isinstance(section, list) else [section]
    return [s for s in sections if isinstance(s, dict)]


def expand_options(options: dict) -> dict:
    """Expand short forms, fill defaults, validate, and resolve the hypers."""
    options = copy.deepcopy(options)
    for name in ("training_set", "validation_set", "test_set"):
        if name in options:
            options[name] = expand_dataset(options[name], name)
    if "architecture" in options and isinstance(options["architecture"], str):
        options["architecture"] = {"name": options["architecture"]}
    train_targets = sorted(
        {t for d in _datasets(options.get("training_set")) for t in d["targets"]}
    )
    options["loss"] = expand_loss(options.get("loss"), train_targets)
    validated = validate(BaseOptions, options).model_dump()
    if not train_targets:
        raise UserError(
            "training_set has no targets: add e.g. 'targets: {energy: {key: energy}}'."
        )
    for name in ("validation_set", "test_set"):
        value = validated[name]
        if isinstance(value, float) and not 0.0 <= value < 1.0:
            raise UserError(
                f"option '{name}' is the fraction {value}; a fraction must be in "
                "[0, 1) (or give a dataset section instead)."
            )
    if isinstance(validated["validation_set"], float) and isinstance(
        validated["test_set"], float
    ):
        if validated["validation_set"] + validated["test_set"] >= 1.0:
            raise UserError(
                f"validation_set ({validated['validation_set']}) and test_set "
                f"({validated['test_set']}) take the whole training set: their sum "
                "must be below 1."
            )
    architecture = validated["architecture"]
    documentation = import_documentation(architecture["name"])
    architecture["model"] = resolve_hypers(
        documentation.ModelHypers,
        architecture["model"],
        "architecture.model",
        architecture["name"],
    )
    architecture["training"] = resolve_hypers(
        documentation.TrainerHypers,
        architecture["training"],
        "architecture.training",
        architecture["name"],
    )
    if validated["seed"] is None:
        validated["seed"] = random.randint(0, 2**31 - 1)
    return validated


def load_options(path: str, overrides: list[str] | None = None) -> dict:
    return expand_options(apply_overrides(read_yaml(path), overrides or []))
