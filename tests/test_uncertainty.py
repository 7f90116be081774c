"""LLPR uncertainty: exact Bayesian posterior, calibration, export, ensembles,
invariance (gnn on the bundled ethanol data, float64)."""

import copy
import os

import pytest
import torch
from metatomic.torch import ModelOutput

from atomtrain.architectures.hypers import resolve_hypers
from atomtrain.architectures.registry import import_architecture, import_documentation
from atomtrain.export import save_exported
from atomtrain.testing.fixtures import (
    F64,
    dataset_info,
    fresh,
    random_rotation,
)
from atomtrain.training.baseline_fit import fit_baselines
from atomtrain.uncertainty import metrics
from atomtrain.uncertainty.calibration import fit, nll_of
from atomtrain.uncertainty.export import (
    calibrate,
    calibrate_llpr,
    describe,
    export_uncertainty,
)
from atomtrain.uncertainty.llpr import (
    Calibrated,
    feature_covariance,
    held_out,
    summed_features,
    wrap,
)
from atomtrain.uncertainty.shallow import fine_tune, member_variance


RESOURCES = os.path.join(os.path.dirname(__file__), "resources")
HYPERS = {"width": 16, "num_vectors": 4, "head_width": 16, "num_heads": 2}
SYSTEM = ModelOutput(sample_kind="system")
ATOM = ModelOutput(sample_kind="atom")


@pytest.fixture(scope="module")
def ethanol():
    """100 ethanol structures (energies in kcal/mol, read into eV)."""
    from atomtrain.data.dataset import read_dataset
    from atomtrain.options.expand import expand_dataset
    from atomtrain.options.schema import DatasetSection
    from atomtrain.options.validation import validate

    path = os.path.join(RESOURCES, "ethanol_reduced_100.xyz")
    targets = {"energy": {"key": "energy", "unit": "kcal/mol", "forces": False}}
    section = expand_dataset({"systems": path, "targets": targets}, "ethanol")
    section = validate(DatasetSection, section).model_dump()
    return list(read_dataset(section, {})[0])


@pytest.fixture(scope="module")
def model(ethanol):
    arch = import_architecture("gnn")
    documentation = import_documentation("gnn")
    hypers = resolve_hypers(documentation.ModelHypers, HYPERS, "model", "gnn")
    info = dataset_info()
    torch.manual_seed(3)
    model = arch.__model__(copy.deepcopy(hypers), info).to(F64)
    with torch.no_grad():
        fit_baselines(model, ethanol, info)
    return model.eval()


@pytest.fixture(scope="module")
def calibrated(model, ethanol):
    wrapper, fitted = calibrate_llpr(
        model, ethanol[:60], ethanol[60:80], F64, torch.device("cpu"), n_members=8
    )
    return wrapper, fitted


def call(model, structures, outputs, grad=False):
    from atomtrain.data.systems import compute_neighbors, make_system

    requests = model.requested_neighbor_lists()
    structures = [fresh(s) for s in structures]
    compute_neighbors(structures, requests)
    made = [
        make_system(s, requests, F64, torch.device("cpu"), grad) for s in structures
    ]
    systems = [m[0] for m in made]
    with torch.set_grad_enabled(grad):
        return model(systems, outputs, None), [m[1] for m in made]


def test_last_layer_features_reproduce_the_prediction(model, ethanol):
    """features @ weights + per-element shift is the per-atom energy."""
    structures = ethanol[:5]
    atomic = call(model, structures, {"energy": ATOM})[0]["energy"].block().values
    from atomtrain.data.systems import compute_neighbors, make_system

    requests = model.requested_neighbor_lists()
    fresh_structures = [fresh(s) for s in structures]
    compute_neighbors(fresh_structures, requests)
    systems = [make_system(s, requests, F64, "cpu")[0] for s in fresh_structures]
    with torch.no_grad():
        phi = model.last_layer_features(systems, "energy")
    linear = phi @ model.last_layer_weights("energy")
    shift = (atomic - linear).reshape(-1)
    types = torch.cat([s.types for s in structures])
    for t in types.unique():
        values = shift[types == t]
        assert torch.allclose(values, values[0].expand_as(values), atol=1e-10)


def test_llpr_variance_is_the_bayesian_posterior_variance(model, ethanol):
    """With alpha^2 = s_n^2 and varsigma = s_n^2/s_w^2, sigma^2 equals the
    posterior variance of Bayesian linear regression on the training features,
    written in its function-space (Gaussian-process) form."""
    target = model.dataset_info.targets["energy"]
    train, test = ethanol[:40], ethanol[90:95]
    covariance = feature_covariance(model, train, target, F64, "cpu")
    s_n, s_w = 0.03, 2.0
    exact = Calibrated(
        target, covariance, s_n**2 / s_w**2, torch.tensor([s_n], dtype=F64), 0.0, 0.0
    )
    wrapper = wrap(model, {"energy": exact}, n_members=2)
    sigma = call(wrapper, test, {"energy_uncertainty": SYSTEM})[0]
    sigma = sigma["energy_uncertainty"].block().values.reshape(-1)

    X = torch.cat([summed_features(model, [s], target, F64, "cpu") for s in train])
    x = torch.cat([summed_features(model, [s], target, F64, "cpu") for s in test])
    gram = s_w**2 * X @ X.T + s_n**2 * torch.eye(X.shape[0], dtype=F64)
    cross = s_w**2 * x @ X.T
    variance = (
        s_w**2 * (x * x).sum(1) - (cross @ torch.linalg.solve(gram, cross.T)).diagonal()
    )
    torch.testing.assert_close(sigma.square(), variance, rtol=1e-6, atol=0.0)


def test_calibration_lowers_the_validation_nll(model, ethanol, calibrated):
    wrapper, fitted = calibrated
    result = fitted["energy"]
    assert result.nll_after < result.nll_before
    # the recorded NLL is the one of the exported sigmas on the same data
    data = held_out(model, ethanol[60:80], result.target, F64, "cpu")
    sigma = call(wrapper, ethanol[60:80], {"energy_uncertainty": SYSTEM})[0]
    sigma = sigma["energy_uncertainty"].block().values
    assert metrics.gaussian_nll(data.errors, sigma) == pytest.approx(result.nll_after)
    refit = fit(result.covariance, data, result.target)
    assert refit.regularizer == result.regularizer


def test_ensemble_mean_is_the_prediction_and_members_differ(calibrated, ethanol):
    wrapper, _ = calibrated
    for kind in (SYSTEM, ATOM):
        out = call(wrapper, ethanol[:4], {"energy": kind, "energy_ensemble": kind})[0]
        members = out["energy_ensemble"].block().values
        energy = out["energy"].block().values
        assert members.shape == (energy.shape[0], 8)
        torch.testing.assert_close(members.mean(dim=1, keepdim=True), energy)
        assert float(members.std(dim=1).min()) > 0


def test_ensemble_spread_matches_sigma(model, ethanol):
    """With many members the ensemble's spread is the LLPR sigma."""
    target = model.dataset_info.targets["energy"]
    data = held_out(model, ethanol[60:80], target, F64, "cpu")
    result = fit(
        feature_covariance(model, ethanol[:60], target, F64, "cpu"), data, target
    )
    wrapper = wrap(model, {"energy": result}, n_members=4000)
    out = call(
        wrapper,
        ethanol[90:93],
        {"energy_ensemble": SYSTEM, "energy_uncertainty": SYSTEM},
    )[0]
    spread = out["energy_ensemble"].block().values.std(dim=1)
    sigma = out["energy_uncertainty"].block().values.reshape(-1)
    torch.testing.assert_close(spread, sigma, rtol=0.06, atol=0.0)


def test_member_forces_average_to_the_forces(calibrated, ethanol):
    wrapper, _ = calibrated
    out, positions = call(
        wrapper, ethanol[:1], {"energy": SYSTEM, "energy_ensemble": SYSTEM}, grad=True
    )
    members = out["energy_ensemble"].block().values
    forces = -torch.autograd.grad(
        out["energy"].block().values.sum(), positions, retain_graph=True
    )[0]
    member_forces = torch.stack(
        [
            -torch.autograd.grad(members[0, m], positions, retain_graph=True)[0]
            for m in range(members.shape[1])
        ]
    )
    torch.testing.assert_close(member_forces.mean(dim=0), forces)
    assert float((member_forces - forces).abs().max()) > 0


def test_uncertainty_is_invariant_to_rotation_and_atom_order(calibrated, ethanol):
    wrapper, _ = calibrated
    structure = ethanol[7]
    rotation = random_rotation(5).to(F64)
    order = torch.randperm(len(structure), generator=torch.Generator().manual_seed(1))
    moved = fresh(structure, positions=structure.positions @ rotation.T)
    permuted = fresh(structure, order=order)
    outputs = {"energy_uncertainty": ATOM}
    reference = (
        call(wrapper, [structure], outputs)[0]["energy_uncertainty"].block().values
    )
    rotated = call(wrapper, [moved], outputs)[0]["energy_uncertainty"].block().values
    shuffled = (
        call(wrapper, [permuted], outputs)[0]["energy_uncertainty"].block().values
    )
    torch.testing.assert_close(rotated, reference)
    torch.testing.assert_close(shuffled, reference[order])
    assert float(reference.min()) > 0


def test_exported_and_in_memory_uncertainties_agree(calibrated, ethanol, tmp_path):
    from metatomic.torch import ModelEvaluationOptions, load_atomistic_model

    from atomtrain.data.systems import compute_neighbors, make_system

    wrapper, fitted = calibrated
    path = str(tmp_path / "calibrated.pt")
    save_exported(export_uncertainty(wrapper, description=describe(fitted, 8)), path)
    loaded = load_atomistic_model(path)
    assert "energy_uncertainty" in loaded.capabilities().outputs
    assert "energy_ensemble" in loaded.capabilities().outputs
    assert "atomtrain.uncertainty" in loaded.metadata().extra
    structures = [fresh(s) for s in ethanol[80:83]]
    requests = loaded.requested_neighbor_lists()
    compute_neighbors(structures, requests)
    for kind in ("system", "atom"):
        outputs = {
            name: ModelOutput(sample_kind=kind)
            for name in ("energy", "energy_uncertainty", "energy_ensemble")
        }
        systems = [make_system(s, requests, F64, "cpu")[0] for s in structures]
        options = ModelEvaluationOptions(length_unit="angstrom", outputs=outputs)
        exported = loaded(systems, options, check_consistency=True)
        in_memory = call(wrapper, ethanol[80:83], outputs)[0]
        for name in outputs:
            torch.testing.assert_close(
                exported[name].block().values, in_memory[name].block().values
            )


def test_metrics_on_known_cases():
    generator = torch.Generator().manual_seed(0)
    sigmas = torch.rand(20000, generator=generator, dtype=F64) + 0.1
    errors = torch.randn(20000, generator=generator, dtype=F64) * sigmas
    assert metrics.rms_z(errors, sigmas) == pytest.approx(1.0, abs=0.02)
    assert metrics.miscalibration_area(errors, sigmas) < 0.01
    assert metrics.miscalibration_area(errors, sigmas / 3) > 0.2
    assert metrics.spearman(errors, sigmas) > 0.3
    assert metrics.spearman(errors, torch.rand(20000, generator=generator)) < 0.05
    assert metrics.spearman([1.0, -2.0, 3.0], [0.1, 0.2, 0.3]) == pytest.approx(1.0)
    assert metrics.spearman([1.0, -3.0, 2.0], [0.1, 0.3, 0.2]) == pytest.approx(1.0)
    nll = metrics.gaussian_nll([0.0], [1.0])
    assert nll == pytest.approx(0.5 * torch.log(torch.tensor(2 * torch.pi)).item())


def test_other_scalar_targets_get_their_own_outputs(tmp_path):
    """A per-structure scalar besides the energy (QM9's HOMO-LUMO gap) gets
    atomtrain::gap_uncertainty and atomtrain::gap_ensemble, exported and checked by
    metatomic."""
    from metatomic.torch import ModelEvaluationOptions, load_atomistic_model

    from atomtrain.data.dataset import read_dataset
    from atomtrain.data.info import DatasetInfo
    from atomtrain.data.systems import compute_neighbors, make_system
    from atomtrain.options.expand import expand_dataset
    from atomtrain.options.schema import DatasetSection
    from atomtrain.options.validation import validate

    path = os.path.join(RESOURCES, "qm9_reduced_100.xyz")
    targets = {
        "energy": {"key": "U0", "unit": "Hartree", "forces": False},
        "atomtrain::gap": {"key": "epsgap", "unit": "Hartree", "quantity": ""},
    }
    section = expand_dataset({"systems": path, "targets": targets}, "qm9")
    section = validate(DatasetSection, section).model_dump()
    structures, infos = read_dataset(section, {})
    structures = list(structures)
    types = sorted({int(t) for s in structures for t in s.types})
    info = DatasetInfo(types, infos)
    arch = import_architecture("soap_bpnn")
    documentation = import_documentation("soap_bpnn")
    hypers = resolve_hypers(documentation.ModelHypers, {}, "model", "soap_bpnn")
    torch.manual_seed(0)
    model = arch.__model__(hypers, info).to(F64)
    with torch.no_grad():
        fit_baselines(model, structures, info)
    wrapper, fitted = calibrate_llpr(
        model.eval(), structures[:70], structures[70:], F64, "cpu", n_members=4
    )
    assert set(fitted) == {"energy", "atomtrain::gap"}
    path = str(tmp_path / "qm9.pt")
    save_exported(export_uncertainty(wrapper), path)
    loaded = load_atomistic_model(path)
    names = ["atomtrain::gap", "atomtrain::gap_uncertainty", "atomtrain::gap_ensemble"]
    assert all(name in loaded.capabilities().outputs for name in names)
    test = [fresh(s) for s in structures[95:]]
    requests = loaded.requested_neighbor_lists()
    compute_neighbors(test, requests)
    systems = [make_system(s, requests, F64, "cpu")[0] for s in test]
    options = ModelEvaluationOptions(outputs={n: SYSTEM for n in names})
    out = loaded(systems, options, check_consistency=True)
    members = out["atomtrain::gap_ensemble"].block().values
    torch.testing.assert_close(
        members.mean(dim=1, keepdim=True), out["atomtrain::gap"].block().values
    )
    assert float(out["atomtrain::gap_uncertainty"].block().values.min()) > 0


def test_deep_ensemble_outputs_exported(ethanol, tmp_path):
    """Mean, scaled spread and members of independently initialised models,
    the same in memory and exported; the fitted scale minimises the NLL."""
    from metatomic.torch import ModelEvaluationOptions, load_atomistic_model

    from atomtrain.data.systems import compute_neighbors, make_system
    from atomtrain.uncertainty.ensembles import DeepEnsemble, fit_scale
    from atomtrain.uncertainty.export import export_ensemble

    arch = import_architecture("gnn")
    documentation = import_documentation("gnn")
    hypers = resolve_hypers(documentation.ModelHypers, HYPERS, "model", "gnn")
    members = []
    for seed in (1, 2, 3):
        torch.manual_seed(seed)
        member = arch.__model__(copy.deepcopy(hypers), dataset_info()).to(F64)
        with torch.no_grad():
            fit_baselines(member, ethanol, member.dataset_info)
        members.append(member.eval())
    structures = ethanol[:4]
    energies = torch.stack(
        [call(m, structures, {"energy": SYSTEM})[0]["energy"].block().values
         for m in members]
    )  # fmt: skip
    reference = torch.stack([s.targets["energy"].reshape(-1) for s in structures])
    scale = fit_scale(energies.mean(0) - reference, energies.std(0))
    nll = [
        metrics.gaussian_nll(energies.mean(0) - reference, energies.std(0) * scale * f)
        for f in (0.9, 1.0, 1.1)
    ]
    assert nll[1] < min(nll[0], nll[2])

    ensemble = DeepEnsemble(members, {"energy": scale})
    names = ["energy", "energy_uncertainty", "energy_ensemble"]
    out = call(ensemble, structures, {n: SYSTEM for n in names})[0]
    out = {n: out[n].block().values for n in names}
    torch.testing.assert_close(out["energy"], energies.mean(0))
    torch.testing.assert_close(out["energy_uncertainty"], energies.std(0) * scale)
    torch.testing.assert_close(out["energy_ensemble"], energies[:, :, 0].T)

    path = str(tmp_path / "ensemble.pt")
    save_exported(export_ensemble(ensemble), path)
    loaded = load_atomistic_model(path)
    fresh_structures = [fresh(s) for s in structures]
    requests = loaded.requested_neighbor_lists()
    compute_neighbors(fresh_structures, requests)
    systems = [make_system(s, requests, F64, "cpu")[0] for s in fresh_structures]
    options = ModelEvaluationOptions(outputs={n: SYSTEM for n in names})
    exported = loaded(systems, options, check_consistency=True)
    for name in names:
        torch.testing.assert_close(exported[name].block().values, out[name])
    # as an engine asks: the energy per structure, its sigma per atom
    per_atom = call(ensemble, structures, {n: ATOM for n in names})[0]
    mixed = {"energy": SYSTEM, "energy_uncertainty": ATOM, "energy_ensemble": SYSTEM}
    options = ModelEvaluationOptions(outputs=mixed)
    exported = loaded(systems, options, check_consistency=True)
    torch.testing.assert_close(exported["energy"].block().values, out["energy"])
    torch.testing.assert_close(
        exported["energy_uncertainty"].block().values,
        per_atom["energy_uncertainty"].block().values,
    )
    torch.testing.assert_close(
        exported["energy_ensemble"].block().values, out["energy_ensemble"]
    )


def test_engine_requests_with_mixed_samples(calibrated, ethanol):
    """Energy per structure with its sigma per atom and its ensemble per
    structure (or the other way round) give what each gives asked alone."""
    wrapper, _ = calibrated
    names = ("energy", "energy_uncertainty", "energy_ensemble")
    alone = {
        kind.sample_kind: call(wrapper, ethanol[:3], {n: kind for n in names})[0]
        for kind in (SYSTEM, ATOM)
    }
    for energy, sigma, members in ((SYSTEM, ATOM, SYSTEM), (SYSTEM, SYSTEM, ATOM)):
        kinds = dict(zip(names, (energy, sigma, members)))
        out = call(wrapper, ethanol[:3], kinds)[0]
        for name, kind in kinds.items():
            torch.testing.assert_close(
                out[name].block().values,
                alone[kind.sample_kind][name].block().values,
            )


def test_calibration_refuses_a_model_without_covered_targets(ethanol):
    """LLPR covers scalar and Cartesian targets; a model with a spherical
    target only is refused, naming its targets."""
    from atomtrain.data.info import TargetInfo
    from atomtrain.errors import UserError

    arch = import_architecture("gnn")
    documentation = import_documentation("gnn")
    hypers = resolve_hypers(documentation.ModelHypers, HYPERS, "model", "gnn")
    target = TargetInfo("atomtrain::shielding", quantity="", unit="", irreps=[(2, 1)])
    info = dataset_info(targets={"atomtrain::shielding": target})
    model = arch.__model__(copy.deepcopy(hypers), info).to(F64)
    with pytest.raises(UserError, match="atomtrain::shielding"):
        calibrate_llpr(model, ethanol[:4], ethanol[4:8], F64, "cpu")


NAMES = ("energy", "energy_uncertainty", "energy_ensemble")


@pytest.fixture(scope="module")
def shallow(model, ethanol):
    section = {"method": "shallow_ensemble", "ensemble_members": 16, "epochs": 150}
    return calibrate(model, ethanol[:60], ethanol[60:80], F64, "cpu", section)


def test_nll_fine_tuning_learns_the_spectrum_of_the_errors():
    """Errors whose variance ``x^T S x`` has another spectrum than LLPR's
    ``alpha^2 x^T (C + varsigma I)^-1 x``: fine-tuned with the NLL on 400
    rows (scale and epoch chosen on 100 others), the members' NLL on 400
    unseen rows is lower than that of the LLPR draws they start from, and
    their variance follows the true one more closely."""
    from atomtrain.data.info import TargetInfo
    from atomtrain.uncertainty.llpr import HeldOut

    generator = torch.Generator().manual_seed(0)
    spread = torch.tensor([3.0, 2.0, 1.0, 0.5, 0.3, 0.2], dtype=F64)
    true = torch.tensor([0.01, 4.0, 0.01, 1.0, 0.01, 9.0], dtype=F64) * 1e-3

    def rows(n):
        x = torch.randn(n, 6, generator=generator, dtype=F64) * spread
        variance = (x.square() * true).sum(1, keepdim=True)
        noise = torch.randn(n, 1, generator=generator, dtype=F64)
        return HeldOut(x, noise * variance.sqrt()), variance

    (train, _), (val, _), (test, variance) = rows(400), rows(100), rows(400)
    llpr = fit(train.features.T @ train.features, val, TargetInfo("energy"))
    tuned = fine_tune(llpr, train, val, n_members=16, epochs=300)
    start = fine_tune(llpr, train, val, n_members=16, epochs=0)
    assert tuned.epoch > 0 and tuned.nll_after < tuned.nll_initial
    assert start.nll_after == pytest.approx(tuned.nll_initial)

    def predicted(ensemble):
        return member_variance(test.features, ensemble.half) * ensemble.scale**2

    assert (
        nll_of(test.errors, predicted(tuned))
        < nll_of(test.errors, predicted(start)) - 0.1
    )
    log_error = [
        float((predicted(e).log() - variance.log()).abs().mean())
        for e in (start, tuned)
    ]
    assert log_error[1] < 0.7 * log_error[0]


def test_sigma_is_the_members_spread_and_their_mean_the_prediction(shallow, ethanol):
    wrapper, ensembles = shallow
    plain = call(wrapper.model, ethanol[:4], {"energy": SYSTEM})[0]
    for kind in (SYSTEM, ATOM):
        out = call(wrapper, ethanol[:4], {name: kind for name in NAMES})[0]
        members = out["energy_ensemble"].block().values
        energy = out["energy"].block().values
        assert members.shape == (energy.shape[0], 16)
        torch.testing.assert_close(members.mean(dim=1, keepdim=True), energy)
        spread = (members - energy).square().mean(dim=1, keepdim=True).sqrt()
        torch.testing.assert_close(out["energy_uncertainty"].block().values, spread)
    torch.testing.assert_close(
        call(wrapper, ethanol[:4], {"energy": SYSTEM})[0]["energy"].block().values,
        plain["energy"].block().values,
    )
    assert describe(ensembles, 16)["energy"]["method"] == "shallow_ensemble"


def test_shallow_ensemble_is_invariant_to_rotation_and_atom_order(shallow, ethanol):
    wrapper, _ = shallow
    structure = ethanol[9]
    rotation = random_rotation(7).to(F64)
    order = torch.randperm(len(structure), generator=torch.Generator().manual_seed(2))
    outputs = {"energy_uncertainty": ATOM, "energy_ensemble": ATOM}

    def values(s):
        out = call(wrapper, [s], outputs)[0]
        return {name: out[name].block().values for name in outputs}

    reference = values(structure)
    rotated = values(fresh(structure, positions=structure.positions @ rotation.T))
    shuffled = values(fresh(structure, order=order))
    for name in outputs:
        torch.testing.assert_close(rotated[name], reference[name])
        torch.testing.assert_close(shuffled[name], reference[name][order])
    assert float(reference["energy_uncertainty"].min()) > 0


def test_exported_shallow_ensemble_equals_in_memory(shallow, ethanol, tmp_path):
    from metatomic.torch import ModelEvaluationOptions, load_atomistic_model

    from atomtrain.data.systems import compute_neighbors, make_system

    wrapper, ensembles = shallow
    path = str(tmp_path / "shallow.pt")
    exported = export_uncertainty(wrapper, description=describe(ensembles, 16))
    save_exported(exported, path)
    loaded = load_atomistic_model(path)
    assert "shallow_ensemble" in loaded.metadata().extra["atomtrain.uncertainty"]
    structures = [fresh(s) for s in ethanol[80:83]]
    requests = loaded.requested_neighbor_lists()
    compute_neighbors(structures, requests)
    systems = [make_system(s, requests, F64, "cpu")[0] for s in structures]
    for kind in ("system", "atom"):
        outputs = {name: ModelOutput(sample_kind=kind) for name in NAMES}
        options = ModelEvaluationOptions(length_unit="angstrom", outputs=outputs)
        result = loaded(systems, options, check_consistency=True)
        in_memory = call(wrapper, ethanol[80:83], outputs)[0]
        for name in NAMES:
            torch.testing.assert_close(
                result[name].block().values, in_memory[name].block().values
            )
