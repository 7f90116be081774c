"""Pack structure files into a store that is read with bounded memory, and
describe a store."""

from __future__ import annotations

import logging
import os
import time
from typing import Any, Dict, Optional, Sequence

import yaml

from atomtrain.data.packed import PackedStore, StoredTarget
from atomtrain.errors import UserError


logger = logging.getLogger("atomtrain")


def pack_data(
    inputs: Sequence[str | os.PathLike],
    output: str | os.PathLike,
    targets: Optional[Dict[str, Any] | str] = None,
    length_unit: Optional[str] = None,
) -> Dict[str, StoredTarget]:
    """``atomtrain data pack``: read ``inputs`` (any format the readers take)
    with the targets of ``targets`` (a dataset section or a mapping of targets,
    as a dict, a YAML file or inline YAML; default: energy in eV with forces
    and stress when present) and stream them into the store ``output``.
    Returns what was stored per target (labels, forces, stresses found)."""
    from atomtrain.data.packing import pack

    inputs, output = [os.fspath(p) for p in inputs], os.fspath(output)
    spec = _spec(targets)
    if length_unit:
        systems = spec.get("systems") if isinstance(spec.get("systems"), dict) else {}
        spec["systems"] = {**systems, "length_unit": length_unit}
    if output in inputs:
        raise UserError(f"the output '{output}' is also an input; choose another name.")
    started = time.perf_counter()
    stored = pack(inputs, output, spec)
    logger.info(
        f"wrote {output} ({os.path.getsize(output) / 1e6:.1f} MB) in "
        f"{time.perf_counter() - started:.1f} s"
    )
    for name, target in stored.items():
        logger.info(
            f"  {name}: {target.n_values} labels ({target.unit or 'no unit'}), "
            f"{target.n_forces} with forces, {target.n_stress} with stress"
        )
    return stored


def describe_store(path: str | os.PathLike) -> Dict[str, Any]:
    """What a store holds: its footer (format, version, counts, types,
    sources) and its targets."""
    store = PackedStore(os.fspath(path))
    try:
        return {**store.footer, "targets": dict(store.targets)}
    finally:
        store.close()


def _spec(targets: Optional[Dict[str, Any] | str]) -> dict:
    """A dataset-section-like dict from a dict, a YAML file or inline YAML."""
    if targets is None:
        return {}
    if isinstance(targets, dict):
        data, where = dict(targets), "targets"
    elif os.path.exists(targets):
        from atomtrain.options.load import read_yaml

        data = read_yaml(targets)
        where = f"--targets file '{targets}'"
    else:
        try:
            data = yaml.safe_load(targets)
        except yaml.YAMLError as error:
            raise UserError(
                f"--targets '{targets}' is neither an existing file nor valid YAML "
                f"({str(error).splitlines()[0]})."
            ) from None
        where = f"--targets '{targets}'"
    if isinstance(data, dict) and isinstance(data.get("training_set"), dict):
        data = data["training_set"]  # an options file
    if not isinstance(data, dict):
        raise UserError(
            f"{where} must be a mapping: a dataset section with 'targets', or a "
            "mapping of target names such as {energy: {unit: kcal/mol}}; got "
            f"{data!r}. (Is the file name right?)"
        )
    if "targets" not in data and "systems" not in data:
        data = {"targets": data}  # a mapping of targets
    return data
