"""Which key of a file holds each label, when the options leave it to defaults.

Files of the field name their labels in a few ways: ASE's ``energy``,
``forces``, ``stress``; MACE's ``REF_energy``, ``REF_forces``, ``REF_stress``,
``REF_virial``; DeePMD-kit's ``energy``, ``forces``, ``virial``. With the same
options syntax all of them load:

- an energy target whose key is the default ``energy`` reads ``REF_energy``
  when no structure has ``energy`` but some have ``REF_energy``;
- gradients left to ``auto`` (not written in the options) are read from
  ``PREFIXforces``/``PREFIXstress``/``PREFIXvirial``, where PREFIX is what comes
  before ``energy`` in the energy key (``REF_`` for ``REF_energy``), else from
  ``forces``/``stress``/``virial``; when both a stress and a virial are found,
  the stress is read.

Keys written in the options are always read as written.
"""

from __future__ import annotations

import logging
from typing import Callable, List, Optional


GRADIENTS = ("forces", "stress", "virial")
MACE_PREFIX = "REF_"
logger = logging.getLogger("atomtrain")


def lookup(atoms, key: str):
    """Value stored under ``key`` in info, arrays or calculator results (ASE
    >= 3.23 moves keys named ``energy``/``forces``/``stress`` into a
    ``SinglePointCalculator``), or None."""
    if key in atoms.info:
        return atoms.info[key]
    if key in atoms.arrays:
        return atoms.arrays[key]
    calc = atoms.calc
    if calc is not None and key in getattr(calc, "results", {}):
        return calc.results[key]
    return None


def available_keys(atoms) -> List[str]:
    keys = set(atoms.info) | set(atoms.arrays) - {"numbers", "positions"}
    if atoms.calc is not None:
        keys |= set(getattr(atoms.calc, "results", {}))
    return sorted(keys)


def _present(frames, key: str) -> bool:
    return any(lookup(atoms, key) is not None for atoms in frames)


def _prefix(key: str) -> str:
    return key[: -len("energy")] if key.endswith("energy") else ""


def _candidates(energy_key: str, gradient: str) -> List[str]:
    prefix = _prefix(energy_key)
    return [prefix + gradient, gradient] if prefix else [gradient]


def resolve_keys(
    dataset_options: dict, frames_of: Callable[[str], list], log: bool = True
) -> dict:
    """``dataset_options`` (expanded) with default keys matched to the file and
    ``auto`` gradients made explicit, or ``False`` when no structure has them.
    Changes and returns ``dataset_options``."""
    for name, target in dataset_options["targets"].items():
        if target.get("quantity") == "energy" and target["key"] == "energy":
            frames = frames_of(target["read_from"])
            mace_key = MACE_PREFIX + "energy"
            if not _present(frames, "energy") and _present(frames, mace_key):
                target["key"] = mace_key
                if log:
                    logger.info(
                        f"target '{name}': no key 'energy' in "
                        f"{target['read_from']}, reading '{mace_key}' (MACE's name)"
                    )
        for gradient in GRADIENTS:
            options = target.get(gradient)
            if options and options.get("auto"):
                target[gradient] = _auto_gradient(
                    options, _candidates(target["key"], gradient), frames_of
                )
        if target.get("stress") and target.get("virial"):
            target["virial"] = False  # the stress is read, the virial is redundant
    return dataset_options


def _auto_gradient(options: dict, candidates: List[str], frames_of) -> dict | bool:
    frames = frames_of(options["read_from"])
    found: Optional[str] = next((k for k in candidates if _present(frames, k)), None)
    if found is None:
        return False
    return {"read_from": options["read_from"], "key": found}
