"""LLPR of Cartesian targets (a dipole-like vector and a polarizability-like
rank-2 tensor per structure, gnn on the bundled ethanol, float64): exact
Bayesian posterior per component, calibration, export, and how the
uncertainty behaves under rotations and permutations."""

import copy
import os

import pytest
import torch
from metatomic.torch import ModelOutput

from atomtrain.architectures.hypers import resolve_hypers
from atomtrain.architectures.registry import import_architecture, import_documentation
from atomtrain.data.info import TargetInfo
from atomtrain.data.systems import compute_neighbors, make_system
from atomtrain.export import save_exported
from atomtrain.testing.fixtures import F64, dataset_info, fresh, random_rotation
from atomtrain.training.baseline_fit import fit_baselines
from atomtrain.uncertainty import metrics
from atomtrain.uncertainty.export import calibrate_llpr, export_uncertainty
from atomtrain.uncertainty.llpr import Calibrated, feature_covariance, held_out, wrap
from atomtrain.uncertainty.names import uncertainty_name


RESOURCES = os.path.join(os.path.dirname(__file__), "resources")
HYPERS = {"width": 16, "num_vectors": 4, "head_width": 8, "num_heads": 2}
DIPOLE, ALPHA = "atomtrain::dipole", "atomtrain::alpha"
TARGETS = {
    DIPOLE: TargetInfo(DIPOLE, "dipole", "e*A", rank=1),
    ALPHA: TargetInfo(ALPHA, "polarizability", "A^3", rank=2),
}
CHARGE = {1: 0.3, 6: -0.2, 8: -0.6}
SYSTEM = ModelOutput(sample_kind="system")
ATOM = ModelOutput(sample_kind="atom")


def labelled(structure):
    """Dipole-like ``sum_i q_i r_i`` and polarizability-like
    ``sum_i (1 + |q_i|) r_i r_i^T + I`` (centred positions): labels that
    rotate like the targets."""
    r = structure.positions - structure.positions.mean(dim=0)
    q = torch.tensor([CHARGE[int(t)] for t in structure.types], dtype=F64)
    dipole = (q.unsqueeze(1) * r).sum(0)
    tensor = torch.einsum("a,ax,ay->xy", 1 + q.abs(), r, r) + torch.eye(3, dtype=F64)
    structure = fresh(structure)
    structure.targets = {DIPOLE: dipole.reshape(1, 3), ALPHA: tensor.reshape(1, 9)}
    return structure


@pytest.fixture(scope="module")
def ethanol():
    """100 ethanol structures with the labels above."""
    from atomtrain.data.dataset import read_dataset
    from atomtrain.options.expand import expand_dataset
    from atomtrain.options.schema import DatasetSection
    from atomtrain.options.validation import validate

    path = os.path.join(RESOURCES, "ethanol_reduced_100.xyz")
    targets = {"energy": {"key": "energy", "unit": "eV", "forces": False}}
    section = expand_dataset({"systems": path, "targets": targets}, "ethanol")
    section = validate(DatasetSection, section).model_dump()
    return [labelled(s) for s in read_dataset(section, {})[0]]


@pytest.fixture(scope="module")
def model(ethanol):
    documentation = import_documentation("gnn")
    hypers = resolve_hypers(documentation.ModelHypers, HYPERS, "model", "gnn")
    info = dataset_info(targets=TARGETS)
    torch.manual_seed(5)
    model = import_architecture("gnn").__model__(copy.deepcopy(hypers), info)
    model = model.to(F64)
    with torch.no_grad():
        fit_baselines(model, ethanol, info)
    return model.eval()


@pytest.fixture(scope="module")
def calibrated(model, ethanol):
    return calibrate_llpr(model, ethanol[:60], ethanol[60:80], F64, "cpu", n_members=8)


def systems_of(model, structures):
    requests = model.requested_neighbor_lists()
    structures = [fresh(s) for s in structures]
    compute_neighbors(structures, requests)
    return [make_system(s, requests, F64, "cpu")[0] for s in structures]


def call(model, structures, outputs):
    with torch.no_grad():
        results = model(systems_of(model, structures), outputs, None)
    return {name: map.block().values for name, map in results.items()}


def test_cartesian_features_reproduce_the_prediction(model, ethanol):
    """Per atom and component, features @ weights is the prediction (rank 2:
    up to the per-element isotropic composition)."""
    systems = systems_of(model, ethanol[:3])
    types = torch.cat([s.types for s in ethanol[:3]])
    with torch.no_grad():
        out = model(systems, {DIPOLE: ATOM, ALPHA: ATOM}, None)
        for name, target in TARGETS.items():
            phi = model.last_layer_features(systems, name)
            assert phi.shape[:2] == (len(types), 3**target.rank)
            linear = (phi @ model.last_layer_weights(name)).reshape(
                out[name].block().values.shape
            )
            rest = out[name].block().values - linear
            if target.rank == 1:
                assert float(rest.abs().max()) < 1e-12
            else:
                composition = model.cartesian_heads[name].baseline.composition
                index = model.type_index(types)
                expected = composition[index].reshape(-1, 1, 1, 1) * torch.eye(
                    3, dtype=F64
                ).reshape(1, 3, 3, 1)
                torch.testing.assert_close(rest, expected, atol=1e-12, rtol=0)


@pytest.mark.parametrize("name", [DIPOLE, ALPHA])
def test_variance_per_component_is_the_bayesian_posterior(model, ethanol, name):
    """With alpha^2 = s_n^2 and varsigma = s_n^2/s_w^2, each component's
    sigma^2 is the posterior variance of Bayesian linear regression whose
    observations are the components of the training structures (each a
    row of per-structure features), in its function-space form."""
    target = TARGETS[name]
    train, test = ethanol[:30], ethanol[90:93]
    covariance = feature_covariance(model, train, target, F64, "cpu")
    s_n, s_w = 0.05, 3.0
    exact = Calibrated(
        target, covariance, s_n**2 / s_w**2, torch.tensor([s_n], dtype=F64), 0, 0
    )
    wrapper = wrap(model, {name: exact}, n_members=2)
    sigma = call(wrapper, test, {uncertainty_name(name): SYSTEM})
    sigma = sigma[uncertainty_name(name)].reshape(-1)  # structure-major

    def rows(structures):
        """Per structure, the atoms' features summed, one row per component."""
        with torch.no_grad():
            parts = [
                model.last_layer_features(systems_of(model, [s]), name).sum(0)
                for s in structures
            ]
        return torch.cat(parts)

    X, x = rows(train), rows(test)
    gram = s_w**2 * X @ X.T + s_n**2 * torch.eye(X.shape[0], dtype=F64)
    cross = s_w**2 * x @ X.T
    variance = (
        s_w**2 * (x * x).sum(1) - (cross @ torch.linalg.solve(gram, cross.T)).diagonal()
    )
    torch.testing.assert_close(sigma.square(), variance, rtol=1e-6, atol=1e-14)


def test_calibration_lowers_the_nll_and_members_average_to_the_prediction(
    model, ethanol, calibrated
):
    wrapper, fitted = calibrated
    assert set(fitted) == {DIPOLE, ALPHA}
    for name, result in fitted.items():
        assert result.nll_after < result.nll_before
        data = held_out(model, ethanol[60:80], result.target, F64, "cpu")
        assert data.errors.shape == (20 * 3**result.target.rank, 1)
        sigma = call(wrapper, ethanol[60:80], {uncertainty_name(name): SYSTEM})
        sigma = sigma[uncertainty_name(name)].reshape(-1, 1)
        assert metrics.gaussian_nll(data.errors, sigma) == pytest.approx(
            result.nll_after
        )
    for kind in (SYSTEM, ATOM):
        outputs = {DIPOLE: kind, "atomtrain::dipole_ensemble": kind}
        out = call(wrapper, ethanol[:3], outputs)
        members = out["atomtrain::dipole_ensemble"]
        assert members.shape == out[DIPOLE].shape[:-1] + (8,)
        torch.testing.assert_close(members.mean(-1, keepdim=True), out[DIPOLE])
        assert float(members.std(-1).min()) > 0


def test_members_rotate_and_total_variance_is_invariant(calibrated, ethanol):
    """Ensemble members are equivariant (R m, R M R^T); the sum of the
    components' variances is invariant under rotation and atom order."""
    wrapper, _ = calibrated
    structure = ethanol[11]
    R = random_rotation(2).to(F64)
    order = torch.randperm(len(structure), generator=torch.Generator().manual_seed(0))
    names = {
        f"{base}_{kind}": SYSTEM
        for base in (DIPOLE, ALPHA)
        for kind in ("uncertainty", "ensemble")
    }
    before = call(wrapper, [structure], names)
    rotated = call(
        wrapper, [fresh(structure, positions=structure.positions @ R.T)], names
    )
    permuted = call(wrapper, [fresh(structure, order=order)], names)
    for name in names:
        torch.testing.assert_close(permuted[name], before[name])
    vectors = before["atomtrain::dipole_ensemble"][0]  # (3, members)
    torch.testing.assert_close(rotated["atomtrain::dipole_ensemble"][0], R @ vectors)
    tensors = before["atomtrain::alpha_ensemble"][0].permute(2, 0, 1)  # (M, 3, 3)
    torch.testing.assert_close(
        rotated["atomtrain::alpha_ensemble"][0].permute(2, 0, 1), R @ tensors @ R.T
    )
    for name in ("atomtrain::dipole_uncertainty", "atomtrain::alpha_uncertainty"):
        total = before[name].square().sum()
        torch.testing.assert_close(rotated[name].square().sum(), total)
        # the components themselves are not invariant: the test can tell
        assert not torch.allclose(rotated[name], before[name], rtol=1e-3)


def test_exported_cartesian_uncertainty_equals_in_memory(calibrated, ethanol, tmp_path):
    from metatomic.torch import ModelEvaluationOptions, load_atomistic_model

    wrapper, _ = calibrated
    path = str(tmp_path / "cartesian.pt")
    save_exported(export_uncertainty(wrapper), path)
    loaded = load_atomistic_model(path)
    structures = ethanol[80:83]
    for kind in ("system", "atom"):
        outputs = {
            f"{base}{suffix}": ModelOutput(sample_kind=kind)
            for base in (DIPOLE, ALPHA)
            for suffix in ("", "_uncertainty", "_ensemble")
        }
        options = ModelEvaluationOptions(length_unit="angstrom", outputs=outputs)
        exported = loaded(systems_of(loaded, structures), options, True)
        in_memory = call(wrapper, structures, outputs)
        for name in outputs:
            block = exported[name].block()
            torch.testing.assert_close(block.values, in_memory[name])
        components = exported["atomtrain::alpha_uncertainty"].block().components
        assert [c.names for c in components] == [["xyz_1"], ["xyz_2"]]


def test_standard_cartesian_outputs_get_namespaced_uncertainties():
    """metatomic knows energy_uncertainty only: the uncertainty of a direct
    force or stress is atomtrain's."""
    assert uncertainty_name("energy/pbe") == "energy_uncertainty/pbe"
    assert (
        uncertainty_name("non_conservative_force")
        == "atomtrain::non_conservative_force_uncertainty"
    )
    assert uncertainty_name(DIPOLE) == "atomtrain::dipole_uncertainty"


def test_eval_scores_every_component(calibrated, ethanol):
    """atomtrain eval's calibration figures of a Cartesian target count each
    component as one value (errors against the labels, the exported sigmas)."""
    from atomtrain.evaluation.engine import evaluate_model

    wrapper, _ = calibrated
    structures = [fresh(s) for s in ethanol[80:90]]
    info = wrapper.model.dataset_info
    evaluation = evaluate_model(wrapper, structures, info, 4, device="cpu", dtype=F64)
    figures = evaluation.calibration["dipole"]
    out = call(wrapper, structures, {DIPOLE: SYSTEM, uncertainty_name(DIPOLE): SYSTEM})
    labels = torch.stack([s.targets[DIPOLE].reshape(3, 1) for s in structures])
    expected = metrics.calibration_report(
        out[DIPOLE] - labels, out[uncertainty_name(DIPOLE)]
    )
    assert set(evaluation.calibration) == {"dipole", "alpha"}
    for key, value in expected.items():
        assert figures[key] == pytest.approx(value, rel=1e-6)
