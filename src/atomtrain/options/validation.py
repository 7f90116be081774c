"""Turn pydantic validation errors into one clear paragraph for the user."""

from __future__ import annotations

import typing
from typing import Any

import pydantic
import typing_extensions

from atomtrain.errors import UserError, did_you_mean


def _fields_at(model: Any, loc: tuple) -> list[str]:
    """Valid key names at ``loc`` inside the (possibly nested) pydantic ``model``."""
    current = model
    for part in loc:
        current = _unwrap(current, part)
        if current is None:
            return []
    candidates = _candidate_models(current)
    return sorted({name for c in candidates for name in _keys_of(c)})


def _keys_of(cls) -> list[str]:
    if isinstance(cls, type) and issubclass(cls, pydantic.BaseModel):
        return list(cls.model_fields)
    if typing_extensions.is_typeddict(cls):
        return list(typing.get_type_hints(cls))
    return []


def _bare(tp):
    """``tp`` without ``Annotated`` metadata (tags of discriminated unions)."""
    while typing.get_origin(tp) is typing.Annotated:
        tp = typing.get_args(tp)[0]
    return tp


def _candidate_models(tp) -> list:
    tp = _bare(tp)
    origin = typing.get_origin(tp)
    if origin is typing.Union:
        return [c for a in typing.get_args(tp) for c in _candidate_models(a)]
    if _keys_of(tp):
        return [tp]
    return []


def _unwrap(tp, part):
    """The type found one step down ``tp`` at ``part`` (field, index or dict key)."""
    tp = _bare(tp)
    origin = typing.get_origin(tp)
    if origin is typing.Union:
        for arg in typing.get_args(tp):
            found = _unwrap(arg, part)
            if found is not None:
                return found
        return None
    if origin in (list, tuple) and isinstance(part, int):
        return typing.get_args(tp)[0]
    if origin is dict:
        return typing.get_args(tp)[1]
    if isinstance(tp, type) and issubclass(tp, pydantic.BaseModel):
        field = tp.model_fields.get(part)
        return field.annotation if field is not None else None
    if typing_extensions.is_typeddict(tp):
        return typing.get_type_hints(tp).get(part)
    return None


def _clean_loc(loc: tuple) -> tuple:
    """Drop pydantic's union-branch tags such as 'DatasetSection' or 'list[...]'."""
    return tuple(
        p
        for p in loc
        if isinstance(p, int)
        or not (
            p[:1].isupper()
            or "[" in p
            or p.startswith("literal")
            or p in ("bool", "float", "int", "str")
        )
    )


def format_loc(loc: tuple, prefix: str = "") -> str:
    path = prefix
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else part)
    return path or "<top level>"


def validate(model, data: Any, prefix: str = "", context: str = "option"):
    """Validate ``data`` against a pydantic model or a TypedDict, or raise UserError.

    The error names the key path, the expected type, the bad value and, for an
    unknown key, the closest valid one.
    """
    adapter = pydantic.TypeAdapter(model)
    try:
        return adapter.validate_python(data)
    except pydantic.ValidationError as error:
        details = error.errors()
        unknown = [d for d in details if d["type"] == "extra_forbidden"]
        chosen = unknown[0] if unknown else _most_specific(details)
        loc = _clean_loc(chosen["loc"])
        path = format_loc(loc, prefix)
        if chosen["type"] == "extra_forbidden":
            valid = _fields_at(model, loc[:-1])
            raise UserError(
                f"unknown {context} '{path}'."
                + did_you_mean(loc[-1], valid)
                + (f" Valid keys here: {', '.join(valid)}." if valid else "")
            ) from None
        if chosen["type"] == "missing":
            raise UserError(f"missing required {context} '{path}'.") from None
        raise UserError(
            f"invalid value for {context} '{path}': {chosen['input']!r} "
            f"({chosen['msg']})."
        ) from None


def _most_specific(details: list[dict]) -> dict:
    # with unions, pydantic reports one error per branch: the deepest is most useful
    return max(details, key=lambda d: len(_clean_loc(d["loc"])))
