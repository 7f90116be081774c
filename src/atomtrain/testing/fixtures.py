"""Helpers of the conformance suite: bundled data, hypers, models and predictions.

Everything here is generic: it only uses the architecture contract
(``__model__``, ``__trainer__``, ``documentation.py``) and the shared data
pipeline, so it works for any architecture, in-tree or plug-in.
"""

from __future__ import annotations

import importlib.util
import os
from typing import Callable, Dict, List, Optional

import torch
from metatensor.torch import TensorMap
from metatomic.torch import ModelOutput

from atomtrain.data.info import DatasetInfo, TargetInfo
from atomtrain.data.structure import Structure
from atomtrain.data.systems import compute_neighbors, make_system
from atomtrain.training.evaluate import Batch, predict


DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data")
# bundled files, energies in eV and forces in eV/Å under the keys below
BUNDLED = ("ethanol", "carbon")
ATOMIC_TYPES = [1, 6, 8]
ENERGY = "energy"
F64 = torch.float64
CPU = torch.device("cpu")


def energy_targets(stress: bool = True) -> Dict[str, TargetInfo]:
    gradients = ["positions", "strain"] if stress else ["positions"]
    return {ENERGY: TargetInfo(ENERGY, gradients=gradients)}


def dataset_info(
    types: Optional[List[int]] = None, targets: Optional[Dict] = None
) -> DatasetInfo:
    return DatasetInfo(
        list(ATOMIC_TYPES if types is None else types),
        dict(energy_targets() if targets is None else targets),
    )


def read_bundled(name: str) -> List[Structure]:
    """The structures of ``data/{name}.xyz`` with their energy and forces."""
    return read_labelled(os.path.join(DATA, f"{name}.xyz"))


def read_labelled(path: str) -> List[Structure]:
    """The structures of an extended XYZ file with their ``energy`` (eV) and
    ``forces``, read as ``atomtrain train`` reads them (for tests and
    benchmarks)."""
    from atomtrain.data.dataset import read_dataset
    from atomtrain.options.expand import expand_dataset
    from atomtrain.options.schema import DatasetSection
    from atomtrain.options.validation import validate

    energy = {"key": "energy", "unit": "eV", "forces": {"key": "forces"}}
    name = os.path.splitext(os.path.basename(path))[0]
    section = expand_dataset({"systems": path, "targets": {"energy": energy}}, name)
    section = validate(DatasetSection, section).model_dump()
    structures, _ = read_dataset(section, {})
    return list(structures)


def fresh(structure: Structure, positions=None, cell=None, order=None) -> Structure:
    """A copy with an empty neighbour cache, optionally moved or permuted."""
    positions = structure.positions if positions is None else positions
    order = torch.arange(len(structure)) if order is None else order
    return Structure(
        types=structure.types[order].clone(),
        positions=positions[order].clone(),
        cell=(structure.cell if cell is None else cell).clone(),
        pbc=structure.pbc.clone(),
        targets={k: v.clone() for k, v in structure.targets.items()},
        forces={k: v[order].clone() for k, v in structure.forces.items()},
        stress={k: v.clone() for k, v in structure.stress.items()},
        source=structure.source,
    )


def with_type(structure: Structure, atom: int, new_type: int) -> Structure:
    """A copy of ``structure`` where atom ``atom`` has the atomic type ``new_type``."""
    copy = fresh(structure)
    copy.types[atom] = new_type
    return copy


def in_memory(model) -> Callable:
    return lambda systems, outputs: model(systems, outputs, None)


def run(
    model,
    structures: List[Structure],
    targets: Optional[Dict[str, TargetInfo]] = None,
    dtype: torch.dtype = F64,
    device: torch.device = CPU,
    call: Optional[Callable] = None,
) -> Batch:
    """Values, forces and (all-periodic batches) stress of ``structures``."""
    requests = model.requested_neighbor_lists()
    structures = [fresh(s) for s in structures]
    compute_neighbors(structures, requests)
    targets = model.dataset_info.targets if targets is None else targets
    call = in_memory(model) if call is None else call
    return predict(call, structures, requests, targets, dtype, device)


def raw_outputs(
    model, structures: List[Structure], outputs: Dict[str, ModelOutput]
) -> Dict[str, TensorMap]:
    """``model.forward`` on ``structures`` (float64, cpu), without gradients."""
    requests = model.requested_neighbor_lists()
    structures = [fresh(s) for s in structures]
    compute_neighbors(structures, requests)
    systems = [make_system(s, requests, F64, CPU)[0] for s in structures]
    with torch.no_grad():
        return model(systems, outputs, None)


def assert_batches_close(actual: Batch, expected: Batch, rtol: float, atol: float):
    """Every value, force and stress of ``expected`` is in ``actual`` and close."""
    for field in ("values", "forces", "stress"):
        got, want = getattr(actual, field), getattr(expected, field)
        assert set(got) == set(want), (field, set(got), set(want))
        for name, value in want.items():
            torch.testing.assert_close(
                got[name].to(value), value, rtol=rtol, atol=atol, msg=f"{field} {name}"
            )


def random_rotation(seed: int) -> torch.Tensor:
    """A random proper rotation (determinant +1), float64."""
    generator = torch.Generator().manual_seed(seed)
    q, r = torch.linalg.qr(torch.randn(3, 3, generator=generator, dtype=F64))
    q = q * torch.sign(torch.diagonal(r))
    if torch.det(q) < 0:
        q[:, 0] = -q[:, 0]
    return q


def checkpoints_folder(module: str) -> Optional[str]:
    """``tests/checkpoints`` next to the architecture package ``module``."""
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = list(spec.submodule_search_locations)[0]
    return os.path.join(folder, "tests", "checkpoints")


def reference_path(checkpoint_path: str) -> str:
    """Where the reference predictions of a stored checkpoint live."""
    return os.path.splitext(checkpoint_path)[0] + ".json"


def reference_predictions(model) -> dict:
    """Predictions of ``model`` (in its own dtype) on each bundled file whose
    atomic types it knows, as lists of floats (the reference file's content)."""
    dtype = next(model.parameters()).dtype
    result = {"dtype": str(dtype).replace("torch.", ""), "data": {}}
    known = set(model.dataset_info.atomic_types)
    for name in BUNDLED:
        structures = read_bundled(name)
        if not all(set(s.types.tolist()) <= known for s in structures):
            continue
        batch = run(model.eval(), structures, dtype=dtype)
        result["data"][name] = {
            field: {k: v.tolist() for k, v in getattr(batch, field).items()}
            for field in ("values", "forces", "stress")
        }
    return result


def compare_references(actual: dict, expected: dict, label: str) -> None:
    """Predictions equal the stored ones to 1e-6 (relative to the largest value of
    each quantity); values are also compared with their mean removed, so that a
    large composition baseline cannot hide a change of the network."""
    assert actual["dtype"] == expected["dtype"], label
    assert set(actual["data"]) == set(expected["data"]), label
    for name, fields in expected["data"].items():
        for field, targets in fields.items():
            assert set(actual["data"][name][field]) == set(targets), label
            for target, values in targets.items():
                want = torch.tensor(values, dtype=F64)
                got = torch.tensor(actual["data"][name][field][target], dtype=F64)
                pairs = [(got, want)]
                if field == "values" and want.numel() > 1:
                    pairs.append((got - want.mean(0), want - want.mean(0)))
                for a, b in pairs:
                    atol = 1e-6 * float(b.abs().max()) if b.numel() else 0.0
                    torch.testing.assert_close(
                        a, b, rtol=1e-6, atol=atol, msg=f"{label}: {name} {field}"
                    )
