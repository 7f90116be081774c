"""Physics of SOAP-BPNN predictions: gradients, stress, symmetries, export."""

import math
import os

import numpy as np
import pytest
import torch

from atomtrain.architectures.hypers import defaults_of
from atomtrain.architectures.registry import import_documentation
from atomtrain.architectures.soap_bpnn.model import SoapBpnn
from atomtrain.data.dataset import read_dataset
from atomtrain.data.info import DatasetInfo
from atomtrain.data.structure import Structure
from atomtrain.data.systems import compute_neighbors
from atomtrain.export import save_exported
from atomtrain.options.expand import expand_dataset
from atomtrain.options.schema import DatasetSection
from atomtrain.options.validation import validate
from atomtrain.training.evaluate import predict


RESOURCES = os.path.join(os.path.dirname(__file__), "resources")
F64 = torch.float64
CPU = torch.device("cpu")


def _read(name, targets, count):
    section = expand_dataset(
        {"systems": os.path.join(RESOURCES, name), "targets": targets}, "x"
    )
    section = validate(DatasetSection, section).model_dump()
    structures, infos = read_dataset(section, {})
    return structures[:count], infos


def _model(structures, infos):
    hypers = defaults_of(import_documentation("soap_bpnn").ModelHypers)
    hypers["bpnn"]["num_neurons_per_layer"] = 32
    hypers["soap"]["max_angular"] = 3
    types = sorted({int(t) for s in structures for t in s.types})
    torch.manual_seed(0)
    model = SoapBpnn(hypers, DatasetInfo(types, infos)).to(F64)
    for head in model.heads.values():  # a non-trivial baseline
        head.baseline.composition.normal_()
    return model


def _predict(model, structures, infos, call=None):
    requests = model.requested_neighbor_lists()
    for s in structures:
        s.neighbors.clear()
    compute_neighbors(structures, requests)
    call = call or (lambda systems, outputs: model(systems, outputs, None))
    return predict(call, structures, requests, infos, F64, CPU)


@pytest.fixture(scope="module")
def ethanol():
    structures, infos = _read(
        "ethanol_reduced_100.xyz", {"energy": {"unit": "kcal/mol"}}, 3
    )
    return structures, infos, _model(structures, infos)


@pytest.fixture(scope="module")
def carbon():
    structures, infos = _read(
        "carbon_reduced_100.xyz", {"energy": {"forces": {"key": "force"}}}, 3
    )
    infos["energy"].gradients = ["positions", "strain"]
    return structures, infos, _model(structures, infos)


def _copy(structure, positions=None, cell=None, order=None):
    order = torch.arange(len(structure)) if order is None else order
    return Structure(
        types=structure.types[order],
        positions=(structure.positions if positions is None else positions)[order],
        cell=structure.cell if cell is None else cell,
        pbc=structure.pbc,
    )


@pytest.mark.parametrize("system", ["ethanol", "carbon"])
def test_forces_are_minus_energy_gradient(system, request):
    structures, infos, model = request.getfixturevalue(system)
    structure = structures[0]
    forces = _predict(model, [structure], infos).forces["energy"]
    h = 1e-5
    for atom, axis in [(0, 0), (1, 2), (3, 1)]:
        energies = []
        for sign in (1, -1):
            positions = structure.positions.clone()
            positions[atom, axis] += sign * h
            energies.append(
                _predict(model, [_copy(structure, positions)], infos).values["energy"]
            )
        numerical = -(energies[0] - energies[1]) / (2 * h)
        assert float(forces[atom, axis]) == pytest.approx(float(numerical), abs=1e-6)


def test_stress_is_strain_derivative(carbon):
    structures, infos, model = carbon
    structure = structures[1]
    stress = _predict(model, [structure], infos).stress["energy"][0]
    volume = abs(float(torch.det(structure.cell)))
    h = 1e-5
    for i, j in [(0, 0), (1, 2), (2, 2)]:
        energies = []
        for sign in (1, -1):
            strain = torch.eye(3, dtype=F64)
            strain[i, j] += sign * h / 2
            strain[j, i] += sign * h / 2
            deformed = _copy(
                structure, structure.positions @ strain, structure.cell @ strain
            )
            energies.append(_predict(model, [deformed], infos).values["energy"])
        numerical = (energies[0] - energies[1]) / (2 * h) / volume
        assert float(stress[i, j]) == pytest.approx(float(numerical), abs=1e-7)


def _rotation(seed):
    q, _ = np.linalg.qr(np.random.default_rng(seed).normal(size=(3, 3)))
    return torch.tensor(q * np.sign(np.linalg.det(q)))


@pytest.mark.parametrize("system", ["ethanol", "carbon"])
def test_invariance_and_covariance(system, request):
    structures, infos, model = request.getfixturevalue(system)
    structure = structures[2]
    base = _predict(model, [structure], infos)
    rotation = _rotation(3)
    order = torch.randperm(len(structure), generator=torch.Generator().manual_seed(1))
    variants = {
        "rotated": _copy(
            structure, structure.positions @ rotation.T, structure.cell @ rotation.T
        ),  # fmt: skip
        "translated": _copy(
            structure, structure.positions + torch.tensor([0.3, -1.2, 2.5], dtype=F64)
        ),  # fmt: skip
        "permuted": _copy(structure, order=order),
    }
    for name, variant in variants.items():
        result = _predict(model, [variant], infos)
        assert float(result.values["energy"]) == pytest.approx(
            float(base.values["energy"]), abs=1e-9), name  # fmt: skip
        expected = base.forces["energy"]
        if name == "rotated":
            expected = expected @ rotation.T
        if name == "permuted":
            expected = expected[order]
        torch.testing.assert_close(result.forces["energy"], expected, atol=1e-9,
                                   rtol=0)  # fmt: skip


def test_energy_smooth_at_cutoff(ethanol):
    _, infos, model = ethanol
    cutoff = model.hypers["soap"]["cutoff"]
    energies, forces = [], []
    for distance in (cutoff - 1e-4, cutoff + 1e-4):
        dimer = Structure(
            types=torch.tensor([6, 8]),
            positions=torch.tensor([[0.0, 0, 0], [distance, 0, 0]], dtype=F64),
            cell=torch.zeros(3, 3, dtype=F64),
            pbc=torch.zeros(3, dtype=torch.bool),
        )
        result = _predict(model, [dimer], infos)
        energies.append(float(result.values["energy"]))
        forces.append(result.forces["energy"])
    assert energies[0] == pytest.approx(energies[1], abs=1e-8)
    assert float(forces[0].abs().max()) < 1e-6


def test_exported_model_matches_in_memory(carbon, tmp_path):
    from metatomic.torch import load_atomistic_model

    from atomtrain.cli.eval import exported_call

    structures, infos, model = carbon
    path = str(tmp_path / "model.pt")
    save_exported(model.export(), path)
    loaded = load_atomistic_model(path)
    direct = _predict(model, structures, infos)
    exported = _predict(model, structures, infos, exported_call(loaded))
    for field in ("values", "forces", "stress"):
        torch.testing.assert_close(
            getattr(exported, field)["energy"], getattr(direct, field)["energy"],
            atol=1e-10, rtol=0)  # fmt: skip
    assert math.isfinite(float(direct.values["energy"].sum()))
