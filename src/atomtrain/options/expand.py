"""Turn a user's short options into the full form, before validation.

Short forms: ``training_set: file.xyz``; ``systems: file.xyz``; a target given as
a key string; ``forces: true``/``"key"``; ``loss: mae``; a loss term given as a
number (its weight). Gradients of an energy target left unset are read when the
file has them (``forces``, ``stress``, ``virial`` keys).
"""

from __future__ import annotations

import copy
from typing import Any

from atomtrain.errors import UserError


GRADIENTS = ("forces", "stress", "virial")

# metatomic's standard outputs predicted directly, without a backward pass:
# their shape is fixed, so the options need only the key of the data. Per
# output: quantity, key, unit, per atom, Cartesian rank (forces: a vector per
# atom; stress: a symmetric 3x3 tensor per structure, 9 numbers in eV/Å³)
DIRECT_TARGETS = {
    name: {
        "quantity": quantity,
        "key": key,
        "unit": unit,
        "per_atom": per_atom,
        "type": {"cartesian": {"rank": rank}},
    }
    for name, quantity, key, unit, per_atom, rank in [
        ("non_conservative_force", "force", "forces", "eV/A", True, 1),
        ("non_conservative_stress", "stress", "stress", "eV/A^3", False, 2),
    ]
}


def expand_dataset(section: Any, where: str) -> Any:
    """Expand one dataset section (or a list of them); fractions pass through."""
    if isinstance(section, list):
        return [expand_dataset(s, f"{where}[{i}]") for i, s in enumerate(section)]
    if isinstance(section, (int, float)) and not isinstance(section, bool):
        return section
    if isinstance(section, str):
        section = {"systems": section, "targets": {"energy": {}}}
    if not isinstance(section, dict):
        raise UserError(
            f"option '{where}' must be a file name, a dataset section with "
            f"'systems' and 'targets', or a fraction; got {section!r}."
        )
    section = copy.deepcopy(section)
    systems = section.get("systems")
    if systems is None:
        raise UserError(
            f"option '{where}' has no 'systems'. Give at least "
            f"'{where}: {{systems: file.xyz}}'."
        )
    if isinstance(systems, str):
        systems = {"read_from": systems}
    if not isinstance(systems, dict):
        raise UserError(f"option '{where}.systems' must be a file name or a section.")
    systems.setdefault("reader", "ase")
    systems.setdefault("length_unit", "angstrom")
    section["systems"] = systems
    targets = section.get("targets") or {}
    if not isinstance(targets, dict):
        raise UserError(
            f"option '{where}.targets' must map target names to sections, got "
            f"{targets!r}."
        )
    section["targets"] = {
        name: _expand_target(name, t, systems.get("read_from"), f"{where}.targets")
        for name, t in targets.items()
    }
    return section


def _expand_target(name: str, target: Any, default_file: str, where: str) -> dict:
    where = f"{where}.{name}"
    if target is None or target is True:
        target = {}
    elif isinstance(target, str):
        target = {"key": target}
    elif not isinstance(target, dict):
        raise UserError(
            f"option '{where}' must be a section (e.g. {{key: {name}, unit: eV}}) or "
            f"the key to read, got {target!r}."
        )
    target = copy.deepcopy(target)
    base = name.split("/", 1)[0]  # variants too
    for key, value in DIRECT_TARGETS.get(base, {}).items():
        target.setdefault(key, copy.deepcopy(value))
    # energy and its variants (energy/pbe, energy/r2scan: metatomic's naming)
    is_energy = name.split("/", 1)[0] == "energy"
    target.setdefault("quantity", "energy" if is_energy else "")
    target.setdefault("read_from", default_file)
    target.setdefault("key", name)
    target.setdefault("unit", "eV" if target["quantity"] == "energy" else "")
    for gradient in GRADIENTS:
        value = target.get(
            gradient, "auto" if target["quantity"] == "energy" else False
        )
        target[gradient] = _expand_gradient(
            value, gradient, target["read_from"], f"{where}.{gradient}"
        )
    return target


def files_read_by(target: dict) -> set[str]:
    """The files an expanded target section reads: its values' and those of
    its forces, stress or virial."""
    files = {target["read_from"]}
    return files | {target[g]["read_from"] for g in GRADIENTS if target.get(g)}


def _expand_gradient(value: Any, gradient: str, default_file: str, where: str):
    if value is False or value is None:
        return False
    if value == "auto":
        return {"read_from": default_file, "key": gradient, "auto": True}
    if value is True:
        return {"read_from": default_file, "key": gradient}
    if isinstance(value, str):
        return {"read_from": default_file, "key": value}
    if isinstance(value, dict):
        value = dict(value)
        value.setdefault("read_from", default_file)
        value.setdefault("key", gradient)
        return value
    raise UserError(
        f"option '{where}' must be true, false, a key name or a section "
        f"{{key: ..., read_from: ...}}; got {value!r}."
    )


def expand_loss(loss: Any, target_names: list[str]) -> dict:
    """Expand the loss section into one full entry per training target."""
    if loss is None:
        loss = {}
    if isinstance(loss, str):
        loss = {name: {"type": loss} for name in target_names}
    if not isinstance(loss, dict):
        raise UserError(
            f"option 'loss' must be a loss type (mse, mae, huber) or a section per "
            f"target, got {loss!r}."
        )
    expanded = {}
    for name, term in loss.items():
        if name not in target_names:
            from atomtrain.errors import did_you_mean

            raise UserError(
                f"option 'loss.{name}' refers to a target that is not in "
                f"training_set (targets: {', '.join(target_names)})."
                + did_you_mean(name, target_names)
            )
        expanded[name] = _expand_loss_term(term, f"loss.{name}", nested=True)
    for name in target_names:
        expanded.setdefault(name, {})
    return expanded


def _expand_loss_term(term: Any, where: str, nested: bool) -> dict:
    if isinstance(term, str):
        term = {"type": term}
    elif isinstance(term, (int, float)) and not isinstance(term, bool):
        term = {"weight": term}
    elif term is None:
        term = {}
    if not isinstance(term, dict):
        raise UserError(
            f"option '{where}' must be a loss type, a weight or a section, got "
            f"{term!r}."
        )
    term = dict(term)
    if nested:
        for gradient in ("forces", "stress"):
            if gradient in term:
                term[gradient] = _expand_loss_term(
                    term[gradient], f"{where}.{gradient}", nested=False
                )
    return term
