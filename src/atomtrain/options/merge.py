"""Nested option sections merged key by key (defaults, presets, user values,
loss changes): one helper for every layer that layers options."""

from __future__ import annotations

import copy


def deep_merge(defaults: dict, user: dict) -> dict:
    """``defaults`` with ``user``'s keys set, sections merged recursively
    (copies: neither input is changed)."""
    merged = copy.deepcopy(defaults)
    for key, value in user.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged
