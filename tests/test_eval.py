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
