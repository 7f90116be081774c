"""Default hypers from ``documentation.py``, merged with the user's and validated.

Hypers are either plain classes whose public attributes are the defaults, or
TypedDicts whose annotated attributes carry types and defaults (validated with
pydantic). Field docstrings are read from the source with ``ast`` so that docs
can be rendered without importing the model code.
"""

from __future__ import annotations

import copy
import sys
import typing
from typing import Any

import typing_extensions

from atomtrain.errors import UserError, did_you_mean
from atomtrain.options.merge import deep_merge
from atomtrain.options.validation import validate


def is_typed(cls) -> bool:
    return typing_extensions.is_typeddict(cls)


_MISSING = object()


def typed_default(cls, name: str) -> Any:
    """Default of field ``name`` in a TypedDict, looking through its TypedDict bases
    (TypedDict subclasses do not inherit class attributes)."""
    if name in vars(cls):
        return vars(cls)[name]
    for base in getattr(cls, "__orig_bases__", ()):
        if is_typed(base):
            value = typed_default(base, name)
            if value is not _MISSING:
                return value
    return _MISSING


def defaults_of(cls) -> dict:
    """The default values of a hypers class (TypedDict or plain class)."""
    if is_typed(cls):
        names = list(typing.get_type_hints(cls))
        defaults = {n: typed_default(cls, n) for n in names}
        missing = [n for n, v in defaults.items() if v is _MISSING]
        if missing:
            raise UserError(
                f"hypers class {cls.__module__}.{cls.__qualname__} has no default "
                f"for {', '.join(missing)}; every hyperparameter needs a default."
            )
        return copy.deepcopy(defaults)
    return {
        n: copy.deepcopy(v)
        for n, v in vars(cls).items()
        if not n.startswith("_") and not callable(v)
    }


def _check_plain_keys(defaults: dict, user: dict, where: str, arch: str):
    for key, value in user.items():
        if key not in defaults:
            raise UserError(
                f"unknown hyperparameter '{where}.{key}' for architecture '{arch}'."
                + did_you_mean(key, defaults)
                + f" Valid keys here: {', '.join(sorted(defaults))}."
            )
        if isinstance(value, dict) and isinstance(defaults[key], dict):
            _check_plain_keys(defaults[key], value, f"{where}.{key}", arch)


def resolve_hypers(cls, user: dict | None, where: str, arch: str) -> dict:
    """Merge the user's hypers over the defaults of ``cls`` and validate them."""
    user = user or {}
    if not isinstance(user, dict):
        raise UserError(
            f"option '{where}' of architecture '{arch}' must be a section, got "
            f"{user!r}."
        )
    defaults = with_preset(cls, defaults_of(cls), user, where, arch)
    merged = deep_merge(defaults, user)
    if is_typed(cls):
        _forbid_extra(cls)
        validated = validate(
            cls, merged, prefix=where, context=f"'{arch}' hyperparameter"
        )
        return _plain(validated)
    _check_plain_keys(defaults, user, where, arch)
    return merged


def with_preset(cls, defaults: dict, user: dict, where: str, arch: str) -> dict:
    """Defaults with the user's named preset merged over them.

    An architecture offers presets with a ``preset`` hyper and a ``PRESETS``
    dict (name -> hypers) beside the hypers class in ``documentation.py``; the
    user's own keys still win over the preset's."""
    presets = getattr(sys.modules.get(cls.__module__), "PRESETS", None)
    name = user.get("preset", defaults.get("preset"))
    if not isinstance(presets, dict) or name is None or "preset" not in defaults:
        return defaults
    if name not in presets:
        raise UserError(
            f"'{where}.preset' of architecture '{arch}' is {name!r}; valid "
            f"presets: {', '.join(repr(p) for p in presets)}."
        )
    return deep_merge(defaults, presets[name])


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    return value


def _forbid_extra(cls) -> None:
    """Make pydantic refuse unknown keys in this TypedDict and nested ones."""
    from pydantic import ConfigDict

    if "__pydantic_config__" not in vars(cls):
        cls.__pydantic_config__ = ConfigDict(extra="forbid")
    for annotation in typing.get_type_hints(cls).values():
        for candidate in (annotation, *typing.get_args(annotation)):
            if typing_extensions.is_typeddict(candidate):
                _forbid_extra(candidate)
