"""Variants of a target (``energy/pbe``, ``energy/r2scan``) learnt by heads on a
shared body from datasets that each label only some of them."""

import os

import ase.io
import numpy as np
import pytest
import torch

from atomtrain.architectures.hypers import deep_merge, defaults_of
from atomtrain.architectures.registry import import_architecture, import_documentation
from atomtrain.data.info import DatasetInfo, TargetInfo, output_name
from atomtrain.data.systems import compute_neighbors
from atomtrain.options.load import expand_options
from atomtrain.testing.fixtures import fresh, read_bundled
from atomtrain.training import distributed
from atomtrain.training.loop import Batchwise
from atomtrain.training.metrics import Metrics


F64 = torch.float64
VARIANTS = ("energy/pbe", "energy/r2scan")


def test_variant_names_follow_metatomic():
    assert output_name("energy/pbe") == "energy/pbe"  # a standard output variant
    assert output_name("dipole/pbe") == "atomtrain::dipole/pbe"
    options = expand_options(
        {
            "architecture": "gnn",
            "training_set": [
                {"systems": "a.xyz", "targets": {"energy/pbe": {"key": "e"}}},
                {"systems": "b.xyz", "targets": {"energy/r2scan": {"key": "e"}}},
            ],
        }
    )
    for section, name in zip(options["training_set"], VARIANTS):
        target = section["targets"][name]
        assert target["quantity"] == "energy" and target["unit"] == "eV"
        assert target["forces"]["key"] == "forces"  # read when the file has it
    assert set(options["loss"]) == set(VARIANTS)


def labelled(structures, variant_of):
    """Copies of ``structures`` where structure ``i`` carries only the label
    (energy and forces) of the variant ``variant_of(i)``."""
    out = []
    for i, structure in enumerate(structures):
        copy = fresh(structure)
        name = variant_of(i)
        copy.targets = {name: torch.tensor([[-float(len(copy)) + 0.1 * i]])}
        copy.forces = {name: torch.randn(len(copy), 3, dtype=F64) * 0.1}
        out.append(copy)
    return out


@pytest.fixture
def two_heads():
    targets = {
        name: TargetInfo(name, gradients=["positions"], per_atom=False)
        for name in VARIANTS
    }
    hypers = deep_merge(
        defaults_of(import_documentation("gnn").ModelHypers),
        {"width": 16, "num_vectors": 4, "num_heads": 2, "head_width": 16},
    )
    torch.manual_seed(0)
    model = import_architecture("gnn").__model__(
        hypers, DatasetInfo([1, 6, 8], targets)
    )
    model = model.to(F64)
    requests = model.requested_neighbor_lists()
    scales = {name: torch.ones(1, dtype=F64) for name in VARIANTS}
    loss_options = {name: {"forces": {"weight": 1.0}} for name in VARIANTS}
    world = distributed.current()
    step = Batchwise(
        model, requests, F64, torch.device("cpu"), scales, loss_options, world
    )
    return model, step


def head_gradients(model, step, batch):
    model.zero_grad()
    compute_neighbors(batch, step.requests)
    loss, errors = step.loss(batch, training=True)
    loss.backward(inputs=[p for p in model.parameters() if p.requires_grad])
    grads = {}
    for name in VARIANTS:
        parameters = list(model.heads[name].parameters())
        grads[name] = [
            torch.zeros_like(p) if p.grad is None else p.grad.clone()
            for p in parameters
        ]
    return grads, errors


def test_each_head_is_scored_only_on_its_own_labels(two_heads):
    """A structure labelled only with r2scan adds nothing to the gradient of
    the pbe head (and the other way round), and each variant's errors count
    only its own labelled structures."""
    model, step = two_heads
    structures = read_bundled("ethanol")[:6]
    batch = labelled(structures, lambda i: VARIANTS[i % 2])
    pbe_only = [s for s in batch if "energy/pbe" in s.targets]
    r2scan_only = [s for s in batch if "energy/r2scan" in s.targets]

    both, errors = head_gradients(model, step, batch)
    alone_pbe, _ = head_gradients(model, step, pbe_only)
    alone_r2scan, _ = head_gradients(model, step, r2scan_only)
    # the loss is a sum of one mean per variant over its own labels, so the
    # mixed batch gives each head exactly its own structures' gradient
    for got, want in zip(both["energy/pbe"], alone_pbe["energy/pbe"]):
        torch.testing.assert_close(got, want)
    for got, want in zip(both["energy/r2scan"], alone_r2scan["energy/r2scan"]):
        torch.testing.assert_close(got, want)
    # and a batch without a head's labels leaves that head untouched
    assert all(float(g.abs().max()) == 0.0 for g in alone_pbe["energy/r2scan"])
    assert all(float(g.abs().max()) == 0.0 for g in alone_r2scan["energy/pbe"])
    assert any(float(g.abs().max()) > 0.0 for g in alone_pbe["energy/pbe"])

    metrics = Metrics(model.dataset_info.targets)
    metrics.update(errors)
    atoms = sum(len(s) for s in pbe_only)
    assert metrics.sums[("energy/pbe", "values")][2] == len(pbe_only)
    assert metrics.sums[("energy/pbe", "forces")][2] == 3 * atoms
    assert metrics.sums[("energy/r2scan", "values")][2] == len(r2scan_only)


# ----------------------------------------------------------------------------
# end to end: two files, each labelled with one level of theory


def write_two_levels(folder: str) -> None:
    """Ethanol frames split in two: 'pbe' labels are the file's energies and
    forces, 'r2scan' a linear map of them (scaled by 1.05, shifted 0.3 eV per
    atom), each file holding one of the two."""
    frames = ase.io.read(
        os.path.join(os.path.dirname(__file__), "resources", "ethanol_reduced_100.xyz"),
        ":60",
    )
    for atoms in frames:
        energy, forces = atoms.get_potential_energy(), atoms.get_forces()
        atoms.calc = None
        atoms.info = {"energy": energy}
        atoms.arrays["forces"] = forces
    pbe, r2scan = frames[:30], frames[30:]
    for atoms in r2scan:
        atoms.info["energy"] = 1.05 * atoms.info["energy"] + 0.3 * len(atoms)
        atoms.arrays["forces"] = 1.05 * atoms.arrays["forces"]
    ase.io.write(os.path.join(folder, "pbe.xyz"), pbe)
    ase.io.write(os.path.join(folder, "r2scan.xyz"), r2scan)


def test_two_datasets_train_two_variants_and_export_both(tmp_path, monkeypatch):
    import csv

    import yaml
    from metatomic.torch import load_atomistic_model
    from metatomic.torch.ase_calculator import MetatomicCalculator

    from atomtrain.cli import main

    monkeypatch.chdir(tmp_path)
    write_two_levels(".")
    options = {
        "architecture": {
            "name": "gnn",
            "model": {"width": 16, "num_vectors": 4, "num_heads": 2},
            "training": {"num_epochs": 4, "batch_size": 10},
        },
        "training_set": [
            {"systems": "pbe.xyz", "targets": {"energy/pbe": {"key": "energy"}}},
            {"systems": "r2scan.xyz", "targets": {"energy/r2scan": {"key": "energy"}}},
        ],
        "validation_set": 0.2,
        "seed": 3,
        "base_precision": 64,
        "logging": {"plots": False},
    }
    with open("options.yaml", "w") as file:
        yaml.safe_dump(options, file)
    assert main(["train", "options.yaml", "--output-dir", "run"]) == 0
    with open("run/train.csv", newline="") as file:
        rows = list(csv.DictReader(file))
    for variant in VARIANTS:
        for split in ("train", "val"):
            assert f"{split} {variant} RMSE (meV/atom)" in rows[-1]
            assert f"{split} {variant} forces RMSE (meV/Å)" in rows[-1]

    # the exported model declares both; metatomic's calculator picks one
    frames = ase.io.read("r2scan.xyz", ":3")
    declared = load_atomistic_model("model.pt").capabilities().outputs
    assert set(VARIANTS) <= set(declared)
    energies = {}
    for variant in ("pbe", "r2scan"):
        calculator = MetatomicCalculator("model.pt", variants={"energy": variant})
        energies[variant] = np.array(
            [calculator.get_potential_energy(a) for a in frames]
        )
    # each head carries its own level's composition baseline: the r2scan head
    # sits near the r2scan labels, the pbe head near 1/1.05 of them
    labels = np.array([a.get_potential_energy() for a in frames])  # ASE moved it
    pbe_labels = (labels - 0.3 * 9) / 1.05
    assert np.abs(energies["r2scan"] - labels).max() < 0.01 * np.abs(labels).max()
    assert np.abs(energies["pbe"] - pbe_labels).max() < 0.01 * np.abs(labels).max()
    assert np.abs(energies["r2scan"] - energies["pbe"]).min() > 100.0

    # atomtrain eval scores one variant against plain labels
    import json

    with open("eval.yaml", "w") as file:
        yaml.safe_dump({"systems": "r2scan.xyz", "targets": {"energy": {}}}, file)
    command = ["eval", "model.pt", "eval.yaml", "-o", "pred.xyz"]
    assert main(command + ["--variant", "r2scan"]) == 0
    predicted = ase.io.read("pred.xyz", ":3")
    np.testing.assert_allclose(
        [a.get_potential_energy() for a in predicted], energies["r2scan"], rtol=1e-9
    )
    with open("pred_metrics.json") as file:
        metrics = json.load(file)
    assert "energy RMSE (meV/atom)" in metrics and "forces RMSE (meV/Å)" in metrics
    assert main(command + ["--variant", "b3lyp"]) == 1  # offers pbe and r2scan
