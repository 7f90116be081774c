"""SOAP's first-order path gives exactly what plain autograd gives.

The in-memory SOAP-BPNN (training and validation) computes the neighbour
density with hand-written first derivatives (``atomtrain.nn.soap_density``);
the exported (TorchScript) model uses plain autograd. Both must agree on
energies, forces, stress and on the weight gradients of a force and stress loss
(which differentiate the backward pass once more), and the first-order path
must refuse second derivatives with respect to positions rather than return a
wrong curvature.
"""

import pytest
import torch

from atomtrain.architectures.hypers import deep_merge, defaults_of
from atomtrain.architectures.registry import import_architecture, import_documentation
from atomtrain.data.info import DatasetInfo, TargetInfo
from atomtrain.data.structure import Structure
from atomtrain.data.systems import compute_neighbors, make_system
from atomtrain.nn.soap_density import (
    density_first_order,
    mixed_density_autograd,
    radial_functions,
)
from atomtrain.nn.spherical import (
    SphericalHarmonics,
    harmonics_with_polynomial_gradient,
    tangential,
)
from atomtrain.testing.fixtures import fresh
from atomtrain.training.evaluate import predict


F64 = torch.float64
CPU = torch.device("cpu")
TARGETS = {"energy": TargetInfo("energy", gradients=["positions", "strain"])}


@pytest.fixture(scope="module")
def model():
    hypers = deep_merge(
        defaults_of(import_documentation("soap_bpnn").ModelHypers),
        {"soap": {"max_angular": 5, "max_radial": 4, "pseudo_species": 3}},
    )
    torch.manual_seed(7)
    model = import_architecture("soap_bpnn").__model__(
        hypers, DatasetInfo([1, 6, 8], dict(TARGETS))
    )
    model = model.to(F64)
    with torch.no_grad():  # channels that are not one-hot, a non-trivial scale
        model.soap.species_mixing.add_(
            0.3 * torch.randn_like(model.soap.species_mixing)
        )
        model.heads["energy"].baseline.scale.fill_(2.3)
    return model


@pytest.fixture(scope="module")
def structures(read_resource):
    """Two ethanol molecules and two small periodic carbon cells (where atoms
    see their own periodic images, the delicate case of half lists)."""
    ethanol, _ = read_resource("ethanol_reduced_100.xyz", {"energy": {"key": "energy"}})
    carbon, _ = read_resource(
        "carbon_reduced_100.xyz",
        {"energy": {"key": "energy", "forces": {"key": "force"}}},
    )
    return [ethanol[0], ethanol[1]], [carbon[0], carbon[1]]


def _predict_with_grads(model, structures, scripted: bool):
    """Predictions and weight gradients of a loss on energies, forces and
    stress, from the in-memory model or its TorchScript compilation."""
    model.train()
    module = torch.jit.script(model) if scripted else model
    requests = model.requested_neighbor_lists()
    batch = [fresh(s) for s in structures]
    compute_neighbors(batch, requests)
    model.zero_grad()

    def call(systems, outputs):
        return module(systems, outputs, None)

    predictions = predict(call, batch, requests, TARGETS, F64, CPU, training=True)
    loss = (predictions.forces["energy"] ** 2).sum() + (
        predictions.values["energy"] ** 2
    ).sum()
    if predictions.stress:
        loss = loss + 1e3 * (predictions.stress["energy"] ** 2).sum()
    parameters = dict(module.named_parameters())
    loss.backward(inputs=list(parameters.values()))
    grads = {n: p.grad.clone() for n, p in parameters.items()}
    return predictions, grads


def test_harmonic_gradients_match_autograd():
    torch.manual_seed(0)
    vectors = torch.randn(40, 3, dtype=F64) * 2.0
    vectors[0] = torch.tensor([0.0, 0.0, 1.5])  # on the axes: poles and equator
    vectors[1] = torch.tensor([0.0, -0.7, 0.0])
    vectors[2] = torch.tensor([3.0, 0.0, 0.0])
    harmonics = SphericalHarmonics(6).to(F64)
    jacobian = torch.autograd.functional.jacobian(harmonics, vectors)
    expected = torch.stack([jacobian[i, :, i] for i in range(len(vectors))])
    distances = torch.linalg.vector_norm(vectors, dim=1)
    unit = vectors / distances.unsqueeze(1)
    values, gradient = harmonics_with_polynomial_gradient(unit, 6)
    gradient = tangential(gradient, unit, distances)
    assert torch.allclose(values, harmonics(vectors), atol=1e-13)
    assert torch.allclose(gradient, expected, atol=1e-12)


@pytest.mark.parametrize("which", ["molecules", "periodic"])
def test_first_order_path_equals_autograd(model, structures, which):
    batch = structures[0] if which == "molecules" else structures[1]
    fast, fast_grads = _predict_with_grads(model, batch, scripted=False)
    exact, exact_grads = _predict_with_grads(model, batch, scripted=True)
    assert torch.allclose(fast.values["energy"], exact.values["energy"], atol=1e-12)
    scale = float(exact.forces["energy"].detach().abs().max())
    assert scale > 1e-3
    assert torch.allclose(
        fast.forces["energy"], exact.forces["energy"], atol=1e-12 * scale
    )
    if which == "periodic":
        assert torch.allclose(fast.stress["energy"], exact.stress["energy"], atol=1e-12)
    for name, grad in exact_grads.items():
        if which == "molecules":  # H, C and O: every weight is exercised
            assert float(grad.abs().max()) > 0, name
        tolerance = 1e-10 * float(grad.abs().max())
        assert torch.allclose(fast_grads[name], grad, atol=tolerance), name


def test_second_derivatives_refused_in_memory_exact_when_exported(model, structures):
    requests = model.requested_neighbor_lists()
    structure = fresh(structures[0][0])
    compute_neighbors([structure], requests)
    model.eval()
    scripted = torch.jit.script(model)

    def forces_of(module, positions, create_graph):
        trial = fresh(structure, positions)
        compute_neighbors([trial], requests)
        return predict(
            lambda systems, outputs: module(systems, outputs, None),
            [trial], requests, TARGETS, F64, CPU, training=create_graph,
        ).forces["energy"]  # fmt: skip

    forces = forces_of(model, structure.positions, True)
    with pytest.raises(RuntimeError, match="second derivatives with respect to"):
        (forces**2).sum().backward()

    # the TorchScript model: a Hessian-vector product equals finite differences
    torch.manual_seed(1)
    direction = torch.randn_like(structure.positions)
    system, leaf = make_system(structure, requests, F64, CPU, positions_grad=True)
    outputs = {"energy": model.supported_outputs()["energy"]}
    energy = scripted([system], outputs, None)["energy"].block().values.sum()
    (gradient,) = torch.autograd.grad(energy, leaf, create_graph=True)
    (hvp,) = torch.autograd.grad((gradient * direction).sum(), leaf)
    h = 1e-5
    plus = forces_of(scripted, structure.positions + h * direction, False)
    minus = forces_of(scripted, structure.positions - h * direction, False)
    numerical = -(plus - minus) / (2 * h)
    assert torch.allclose(hvp, numerical, atol=1e-6 * float(hvp.abs().max()))


def test_atom_without_neighbours(model):
    lonely = Structure(
        types=torch.tensor([8, 1]),
        positions=torch.tensor([[0.0, 0.0, 0.0], [20.0, 0.0, 0.0]], dtype=F64),
        cell=torch.zeros(3, 3, dtype=F64),
        pbc=torch.zeros(3, dtype=torch.bool),
    )
    fast, _ = _predict_with_grads(model, [lonely], scripted=False)
    exact, _ = _predict_with_grads(model, [lonely], scripted=True)
    assert torch.equal(fast.forces["energy"], torch.zeros(2, 3, dtype=F64))
    assert torch.allclose(fast.values["energy"], exact.values["energy"], atol=1e-12)


def test_padded_density_equals_a_plain_sum():
    """Both paths pad each atom's pairs into slots; against a sum pair by pair:
    uneven neighbour counts, an atom with none, repeated pairs and self-images."""
    torch.manual_seed(3)
    n_atoms, l_max = 7, 3
    centers = torch.tensor([0, 0, 0, 0, 0, 1, 2, 2, 3, 3, 5, 5, 0])
    neighbors = torch.tensor([1, 2, 3, 5, 5, 2, 3, 2, 5, 1, 0, 1, 0])
    vectors = torch.randn(len(centers), 3, dtype=F64) * 1.5
    types = torch.tensor([0, 1, 1, 0, 1, 0, 1])
    mixing = torch.randn(2, 3, dtype=F64)
    frequencies = torch.pi / 4.0 * torch.arange(1, 5, dtype=F64)
    harmonics = SphericalHarmonics(l_max).to(F64)(vectors)
    parity = torch.tensor(
        [(-1.0) ** l for l in range(l_max + 1) for _ in range(2 * l + 1)], dtype=F64
    )
    radial = radial_functions(
        torch.linalg.vector_norm(vectors, dim=1), frequencies, 4.0, 1.0
    )
    expected = torch.zeros(2, n_atoms, 4, harmonics.shape[1], dtype=F64)
    for p, (i, j) in enumerate(zip(centers.tolist(), neighbors.tolist())):
        expansion = torch.outer(radial[p], harmonics[p])
        expected[types[j], i] += expansion
        expected[types[i], j] += expansion * parity

    rows = types[neighbors] * n_atoms + centers
    reverse_rows = types[centers] * n_atoms + neighbors
    density = density_first_order(
        vectors, rows, reverse_rows, 2 * n_atoms, frequencies, 4.0, 1.0, l_max, parity
    )
    assert torch.allclose(density.reshape(expected.shape), expected, atol=1e-13)

    mixed = mixed_density_autograd(
        vectors, centers, neighbors, types, mixing, frequencies, 4.0, 1.0,
        harmonics, parity,
    )  # fmt: skip
    expected_mixed = torch.einsum("es,eank->asnk", mixing, expected)
    assert torch.allclose(
        mixed, expected_mixed.reshape(n_atoms, -1, harmonics.shape[1]), atol=1e-13
    )
    assert float(expected[:, 4].abs().max()) == 0.0  # atom 4 has no pair
