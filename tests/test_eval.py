"""Exported models through eval and ASE agree; QM9 per-structure targets."""

import os

import ase.io
import numpy as np
import pytest
import yaml

from atomtrain.cli import main


RESOURCES = os.path.join(os.path.dirname(__file__), "resources")
SMALL = [
    "-o",
    "architecture.model.bpnn.num_neurons_per_layer=16",
    "-o",
    "architecture.model.soap.max_angular=2",
    "-o",
    "architecture.model.soap.max_radial=4",
]


def _write_options(path, training_set, epochs=2, **extra):
    options = {
        "architecture": {"name": "soap_bpnn", "training": {"num_epochs": epochs}},
        "training_set": training_set,
        "validation_set": 0.2,
        "seed": 1,
        **extra,
    }
    with open(path, "w") as file:
        yaml.safe_dump(options, file)


@pytest.fixture
def ethanol(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    frames = ase.io.read(os.path.join(RESOURCES, "ethanol_reduced_100.xyz"), ":30")
    ase.io.write("ethanol.xyz", frames)
    targets = {"energy": {"key": "energy", "unit": "kcal/mol", "forces": True}}
    _write_options("options.yaml", {"systems": "ethanol.xyz", "targets": targets})
    with open("eval.yaml", "w") as file:
        yaml.safe_dump({"systems": "ethanol.xyz", "targets": targets}, file)
    return tmp_path


def test_exported_model_in_ase_matches_eval(ethanol):
    from metatomic_ase import MetatomicCalculator

    assert (
        main(
            [
                "train",
                "options.yaml",
                *SMALL,
                "-o",
                "architecture.training.num_epochs=1",
            ]
        )
        == 0
    )
    assert main(["eval", "model.pt", "eval.yaml", "-o", "pred.xyz"]) == 0
    calculator = MetatomicCalculator("model.pt")
    for atoms in ase.io.read("pred.xyz", ":3"):
        copy = atoms.copy()
        copy.calc = calculator
        assert copy.get_potential_energy() == pytest.approx(
            atoms.get_potential_energy(), abs=2e-3
        )
        np.testing.assert_allclose(copy.get_forces(), atoms.get_forces(), atol=2e-4)


def test_qm9_per_structure_scalar_targets(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    frames = ase.io.read(os.path.join(RESOURCES, "qm9_reduced_100.xyz"), ":40")
    ase.io.write("qm9.xyz", frames)
    targets = {
        "U0": {"quantity": "energy", "unit": "hartree"},
        "mu": {"unit": "D"},
        "alpha": {"unit": "Bohr^3"},  # isotropic polarizability, a scalar
    }
    _write_options("options.yaml", {"systems": "qm9.xyz", "targets": targets})
    assert main(["train", "options.yaml", *SMALL]) == 0
    with open("eval.yaml", "w") as file:
        yaml.safe_dump({"systems": "qm9.xyz", "targets": targets}, file)
    assert main(["eval", "model.pt", "eval.yaml", "-o", "pred.xyz"]) == 0
    predicted = ase.io.read("pred.xyz", ":")
    u0 = np.array([a.info["U0"] for a in predicted])
    reference = np.array([a.info["U0"] for a in frames]) * 27.211386
    # Hartree converted to eV; the composition baseline alone is within ~1 eV
    assert np.abs(u0 - reference).mean() < 2.0
    assert all(np.isfinite(a.info["mu"]) for a in predicted)
    metrics = yaml.safe_load(open("pred_metrics.json"))
    assert "mu MAE (D)" in metrics and "U0 MAE (meV/atom)" in metrics
    assert "alpha MAE (Bohr^3)" in metrics
    assert all(np.isfinite(a.info["alpha"]) for a in predicted)


# ----------------------------------------------------------- streaming eval
TINY = {
    "soap": {"max_radial": 2, "max_angular": 1, "cutoff": 3.0},
    "bpnn": {"num_neurons_per_layer": 4, "num_hidden_layers": 1},
}


@pytest.fixture(scope="module")
def packed(tmp_path_factory):
    """An exported untrained tiny SOAP-BPNN and a packed store of 120
    structures with energies and forces (the model's errors are large, which is
    what exactness needs: nothing rounds to zero)."""
    import sys

    import torch

    from atomtrain.architectures.hypers import resolve_hypers
    from atomtrain.architectures.registry import (
        import_architecture,
        import_documentation,
    )
    from atomtrain.export import save_exported
    from atomtrain.testing.fixtures import dataset_info

    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "bench"))
    from packed_memory import write_store

    folder = tmp_path_factory.mktemp("streaming")
    write_store(str(folder / "data.atd"), 120, seed=3)
    documentation = import_documentation("soap_bpnn")
    hypers = resolve_hypers(documentation.ModelHypers, TINY, "model", "soap_bpnn")
    model_class = import_architecture("soap_bpnn").__model__
    torch.manual_seed(0)
    info = dataset_info([1, 6, 7, 8], {"energy": dataset_info().targets["energy"]})
    model = model_class(hypers, info).to(torch.float64)
    save_exported(model.export(), str(folder / "model.pt"))
    return folder


def _scored(folder, batch_size, **kwargs):
    from atomtrain.api import evaluate

    data = {"systems": str(folder / "data.atd"), "targets": {"energy": {}}}
    return evaluate(str(folder / "model.pt"), data, batch_size, **kwargs)


def test_streamed_metrics_equal_an_in_memory_computation(packed):
    """Running sums over batches of 7 give the RMSE and MAE that numpy computes
    from every (predicted, reference) pair held at once (one batch, a sample
    large enough to keep every pair)."""
    from atomtrain.evaluation.engine import evaluate_model
    from atomtrain.evaluation.inputs import read_evaluation_data
    from atomtrain.evaluation.models import load_exported, model_targets

    streamed = _scored(packed, 7, output=str(packed / "streamed.xyz")).metrics
    model = load_exported(str(packed / "model.pt"))
    structures, _ = read_evaluation_data(
        {"systems": str(packed / "data.atd"), "targets": {"energy": {}}}
    )
    whole = evaluate_model(
        model, structures, model_targets(model), len(structures), sample_size=10**6
    )
    pairs = whole.sample.pairs()
    assert set(pairs) == {("energy", "values"), ("energy", "forces")}
    n_atoms = sum(len(s) for s in structures)
    assert len(pairs[("energy", "values")][0]) == len(structures) == 120
    assert len(pairs[("energy", "forces")][0]) == 3 * n_atoms
    expected = {}
    for (_, kind), (predicted, reference) in pairs.items():
        error = (predicted - reference) * 1000.0  # eV -> meV
        label, unit = (
            ("energy", "meV/atom") if kind == "values" else ("forces", "meV/Å")
        )
        expected[f"{label} RMSE ({unit})"] = float(np.sqrt(np.mean(error**2)))
        expected[f"{label} MAE ({unit})"] = float(np.mean(np.abs(error)))
    assert set(streamed) == set(expected)
    for key, value in expected.items():
        assert value > 1.0  # an untrained model: errors far from zero
        assert streamed[key] == pytest.approx(value, rel=1e-10, abs=0), key


def test_parity_sample_is_bounded_and_drawn_from_every_batch(packed):
    """Plots get at most ``sample_size`` pairs per panel, uniformly from all
    batches, each one a real (predicted, reference) pair; metrics stay exact."""
    from atomtrain.evaluation.engine import evaluate_model
    from atomtrain.evaluation.inputs import read_evaluation_data
    from atomtrain.evaluation.models import load_exported, model_targets
    from atomtrain.evaluation.sample import ParitySample

    model = load_exported(str(packed / "model.pt"))
    structures, _ = read_evaluation_data(
        {"systems": str(packed / "data.atd"), "targets": {"energy": {}}}
    )
    info = model_targets(model)
    whole = evaluate_model(model, structures, info, 120, sample_size=10**6)
    small = evaluate_model(model, structures, info, 5, sample_size=100)
    assert small.metrics == pytest.approx(whole.metrics, rel=1e-10)
    for key, (predicted, reference) in small.sample.pairs().items():
        all_predicted, all_reference = whole.sample.pairs()[key]
        assert len(predicted) == 100 < len(all_predicted)
        assert small.sample.seen(key) == len(all_predicted)
        index = {
            (round(p, 9), round(r, 9)) for p, r in zip(all_predicted, all_reference)
        }
        assert all(
            (round(p, 9), round(r, 9)) in index for p, r in zip(predicted, reference)
        )
    # uniform over the stream: a sample of 30 from 120 numbers fed 10 at a time
    draws = []
    for seed in range(200):
        sample = ParitySample(size=30, seed=seed)
        for start in range(0, 120, 10):
            chunk = np.arange(start, start + 10, dtype=float)
            sample.add(("energy", "values"), chunk, chunk)
        kept, _ = sample.pairs()[("energy", "values")]
        assert len(set(kept.tolist())) == 30
        draws.append(kept)
    counts = np.bincount(np.concatenate(draws).astype(int), minlength=120)
    # each number is kept with probability 1/4: 50 of 200 draws on average
    assert counts.min() > 25 and counts.max() < 80, counts


def test_predictions_are_written_batch_by_batch(packed, monkeypatch):
    """The file grows as batches are predicted (as OUTPUT.partial), becomes
    OUTPUT when the evaluation ends, and holds what in-memory predictions hold."""
    from atomtrain.evaluation import writing

    sizes = []

    class Spy(writing.ExtxyzWriter):
        def add(self, structures, predictions):
            super().add(structures, predictions)
            sizes.append(
                (self.count, len(ase.io.read(self.partial, ":", format="extxyz")))
            )

    import atomtrain.api.evaluating as evaluating

    monkeypatch.setattr(evaluating, "ExtxyzWriter", Spy)
    output = packed / "written.xyz"
    _scored(packed, 25, output=str(output))
    assert sizes == [(25, 25), (50, 50), (75, 75), (100, 100), (120, 120)]
    assert not os.path.exists(str(output) + ".partial")
    written = ase.io.read(str(output), ":")
    in_memory = _scored(packed, 120).predictions
    assert len(written) == 120
    for a, b in zip(written, in_memory):
        assert a.get_potential_energy() == pytest.approx(b.get_potential_energy())
        np.testing.assert_allclose(a.get_forces(), b.get_forces(), atol=1e-6)
