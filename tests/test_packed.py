"""The packed store: same structures and targets as the files it was packed from,
training and eval read it lazily, and bad stores fail with one clear paragraph."""

from __future__ import annotations

import csv
import glob
import os
import struct
import sys

import ase
import ase.io
import numpy as np
import pytest
import torch
import yaml

from atomtrain.cli import main
from atomtrain.data.dataset import load_datasets, read_dataset
from atomtrain.data.packed import HEADER, PackedDataset
from atomtrain.data.sequences import LazyStructures
from atomtrain.options.expand import expand_dataset
from atomtrain.options.load import load_options
from atomtrain.options.schema import DatasetSection
from atomtrain.options.validation import validate


sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "bench"))
from packed_memory import synthetic_structures, write_store  # noqa: E402


RESOURCES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "resources")
KCAL_PER_MOL = 0.0433641  # eV
TINY = {
    "soap": {"max_radial": 2, "max_angular": 1, "cutoff": 3.0},
    "bpnn": {"num_neurons_per_layer": 4, "num_hidden_layers": 1},
}


def read(path: str, targets: dict, length_unit: str = "angstrom"):
    section = {
        "systems": {"read_from": path, "length_unit": length_unit},
        "targets": targets,
    }
    section = validate(DatasetSection, expand_dataset(section, "x")).model_dump()
    return read_dataset(section, {})


def assert_same_structures(expected: list, actual) -> None:
    assert len(expected) == len(actual)
    for a, b in zip(expected, actual):
        assert a.source == b.source
        for name in ("types", "positions", "cell", "pbc"):
            x, y = getattr(a, name), getattr(b, name)
            assert x.dtype == y.dtype and torch.equal(x, y), (a.source, name)
        for name in ("targets", "forces", "stress"):
            x, y = getattr(a, name), getattr(b, name)
            assert x.keys() == y.keys(), (a.source, name)
            for key in x:
                assert x[key].dtype == y[key].dtype, (a.source, name, key)
                assert torch.equal(x[key], y[key]), (a.source, name, key)


def write_synthetic_xyz(path: str, n: int) -> None:
    """Molecules in nm with energies in kcal/mol, a per-atom target on every
    structure and a 3-vector on every other one (missing labels)."""
    frames = []
    for i, structure in enumerate(synthetic_structures(n, seed=3)):
        atoms = ase.Atoms(
            numbers=structure.types.numpy(), positions=structure.positions.numpy() / 10
        )
        atoms.info["energy"] = float(structure.targets["energy"]) / KCAL_PER_MOL
        atoms.arrays["forces"] = structure.forces["energy"].numpy() / KCAL_PER_MOL * 10
        atoms.arrays["charges"] = np.linspace(-1, 1, len(atoms))
        if i % 2:
            atoms.info["dipole"] = np.array([i, -i, 0.5 * i], dtype=float)
        frames.append(atoms)
    ase.io.write(path, frames, format="extxyz")


SYNTHETIC_TARGETS = {
    "energy": {"unit": "kcal/mol"},
    "charges": {"per_atom": True, "unit": "e"},
    "dipole": {"num_subtargets": 3, "unit": "e*A"},
}


def test_packed_and_xyz_give_identical_structures(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_synthetic_xyz("molecules.xyz", 60)
    spec = yaml.safe_dump(SYNTHETIC_TARGETS, default_flow_style=True)
    argv = ["data", "pack", "molecules.xyz", "-o", "molecules.atd"]
    assert main([*argv, "--targets", spec.strip(), "--length-unit", "nm"]) == 0
    expected, expected_info = read("molecules.xyz", SYNTHETIC_TARGETS, "nm")
    packed, packed_info = read(
        "molecules.atd", {name: {} for name in SYNTHETIC_TARGETS}
    )
    assert isinstance(packed, PackedDataset)
    assert packed_info == expected_info
    assert_same_structures(expected, packed)
    assert sum("atomtrain::dipole" in s.targets for s in packed) == 30

    # periodic structures with a virial, stored as a stress
    frames = ase.io.read(os.path.join(RESOURCES, "carbon_reduced_100.xyz"), ":10")
    for i, atoms in enumerate(frames):
        virial = np.arange(9.0).reshape(3, 3) + i
        atoms.info["virial"] = virial + virial.T
    ase.io.write("carbon.xyz", frames)
    targets = {"energy": {"forces": {"key": "force"}, "virial": True}}
    spec = yaml.safe_dump(targets, default_flow_style=True).strip()
    assert main(["data", "pack", "carbon.xyz", "-o", "c.atd", "--targets", spec]) == 0
    expected, expected_info = read("carbon.xyz", targets)
    packed, packed_info = read("c.atd", {"energy": {}})
    assert packed_info == expected_info
    assert expected_info["energy"].gradients == ["positions", "strain"]
    assert_same_structures(expected, packed)


def test_several_inputs_and_an_options_file_as_spec(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    frames = ase.io.read(os.path.join(RESOURCES, "ethanol_reduced_100.xyz"), ":20")
    ase.io.write("a.xyz", frames[:12])
    ase.io.write("b.xyz", frames[12:])
    targets = {"energy": {"unit": "kcal/mol", "forces": True}}
    options = {"architecture": {"name": "soap_bpnn"}}
    with open("options.yaml", "w") as file:
        yaml.safe_dump({**options, "training_set": {"targets": targets}}, file)
    argv = ["data", "pack", "a.xyz", "b.xyz", "-o", "ab.atd", "--targets"]
    assert main([*argv, "options.yaml"]) == 0
    expected = read("a.xyz", targets)[0] + read("b.xyz", targets)[0]
    packed, _ = read("ab.atd", {"energy": {}})
    assert_same_structures(expected, packed)
    assert main(["data", "info", "ab.atd"]) == 0


def test_random_splits_of_packed_data_stay_lazy_and_match_xyz(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    frames = ase.io.read(os.path.join(RESOURCES, "ethanol_reduced_100.xyz"), ":40")
    ase.io.write("ethanol.xyz", frames)
    argv = ["data", "pack", "ethanol.xyz", "-o", "ethanol.atd"]
    assert main([*argv, "--targets", "{energy: {unit: kcal/mol}}"]) == 0
    splits = []
    for training_set in (
        {"systems": "ethanol.xyz", "targets": {"energy": {"unit": "kcal/mol"}}},
        "ethanol.atd",
    ):
        with open("options.yaml", "w") as file:
            yaml.safe_dump(
                {
                    "architecture": {"name": "soap_bpnn"},
                    "training_set": training_set,
                    "validation_set": 0.2,
                    "test_set": 0.1,
                    "seed": 5,
                },
                file,
            )
        splits.append(load_datasets(load_options("options.yaml", [])))
    (xyz_train, xyz_val, xyz_test, xyz_info) = splits[0]
    (train, val, test, info) = splits[1]
    assert all(isinstance(d, LazyStructures) for d in (*train, *val, *test))
    assert info == xyz_info
    for expected, packed in ((xyz_train, train), (xyz_val, val), (xyz_test, test)):
        assert_same_structures(expected[0], packed[0])


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One epoch of a tiny model on 10,000 packed structures."""
    folder = tmp_path_factory.mktemp("packed")
    write_store(str(folder / "synthetic.atd"), 10_000, seed=0)
    options = {
        "architecture": {
            "name": "soap_bpnn",
            "model": TINY,
            "training": {"num_epochs": 1, "batch_size": 500},
        },
        # energies only: no double backward through forces, a faster epoch
        "training_set": {
            "systems": "synthetic.atd",
            "targets": {"energy": {"forces": False}},
        },
        "validation_set": 0.02,
        "test_set": 0.0,
        "seed": 1,
    }
    with open(folder / "options.yaml", "w") as file:
        yaml.safe_dump(options, file)
    cwd = os.getcwd()
    os.chdir(folder)
    try:
        assert main(["train", "options.yaml", "--output-dir", "run"]) == 0
    finally:
        os.chdir(cwd)
    return folder


def test_training_reads_a_packed_store(trained):
    with open(trained / "run" / "train.csv") as file:
        (row,) = list(csv.DictReader(file))
    assert float(row["val energy RMSE (meV/atom)"]) > 0
    assert "val forces RMSE (meV/Å)" not in row
    with open(trained / "run" / "train.log") as file:
        log = file.read()
    assert "9800 training, 200 validation" in log
    assert "neighbour lists of" not in log  # none precomputed for packed data


def test_eval_accepts_a_packed_store(trained, monkeypatch):
    monkeypatch.chdir(trained)
    write_store("few.atd", 25, seed=9)
    assert main(["eval", "model.pt", "few.atd", "-o", "few.xyz"]) == 0
    assert len(ase.io.read("few.xyz", ":")) == 25
    assert not os.path.exists("few_metrics.json")  # a bare file: no targets read
    with open("eval.yaml", "w") as file:
        yaml.safe_dump({"systems": "few.atd", "targets": {"energy": {}}}, file)
    assert main(["eval", "model.pt", "eval.yaml", "-o", "scored.xyz"]) == 0
    with open("scored_metrics.json") as file:
        assert "energy RMSE (meV/atom)" in file.read()


# ------------------------------------------------------------------ bad inputs
@pytest.fixture
def store(tmp_path, monkeypatch) -> str:
    monkeypatch.chdir(tmp_path)
    write_store("data.atd", 30)
    return "data.atd"


def error_of(capsys, argv: list) -> str:
    assert main(argv) == 1
    error = capsys.readouterr().err.strip()
    assert error.count("\n") == 0 and "Traceback" not in error, error
    return error


def test_missing_store_is_a_clear_error(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    with open("options.yaml", "w") as file:
        yaml.safe_dump(
            {"architecture": {"name": "soap_bpnn"}, "training_set": "nowhere.atd"},
            file,
        )
    error = error_of(capsys, ["train", "options.yaml"])
    assert "'nowhere.atd' does not exist" in error and "data pack" in error
    error = error_of(capsys, ["data", "info", "nowhere.atd"])
    assert "'nowhere.atd' does not exist" in error and "data pack" in error


def test_truncated_store_is_a_clear_error(store, capsys):
    with open(store, "rb") as file:
        data = file.read()
    with open(store, "wb") as file:
        file.write(data[: len(data) // 2])
    error = error_of(capsys, ["data", "info", store])
    assert "damaged or incomplete" in error and "data pack" in error


def test_corrupted_record_is_found_by_its_checksum(store, capsys):
    with open(store, "r+b") as file:
        file.seek(HEADER.size + 20)
        byte = file.read(1)
        file.seek(HEADER.size + 20)
        file.write(bytes([byte[0] ^ 0xFF]))
    dataset, _ = read(store, {"energy": {}})
    dataset[5]  # another record is intact
    with pytest.raises(Exception, match="structure 0 fails its checksum"):
        dataset[0]


def test_store_of_a_newer_format_is_refused(store, capsys):
    with open(store, "r+b") as file:
        file.seek(16)
        file.write(struct.pack("<I", 99))
    error = error_of(capsys, ["data", "info", store])
    assert "newer atomtrain" in error and "format version 99" in error


def test_foreign_file_named_atd_is_refused(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    with open("data.atd", "w") as file:
        file.write("3\n\nH 0 0 0\nH 0 0 1\nH 0 1 0\n")
    error = error_of(capsys, ["data", "info", "data.atd"])
    assert "not a packed atomtrain data file" in error


def test_options_that_contradict_the_store_are_refused(store, capsys):
    with pytest.raises(Exception, match="stored converted, in 'eV'"):
        read(store, {"energy": {"unit": "kcal/mol"}})
    with pytest.raises(Exception, match="has no target 'dipole'"):
        read(store, {"dipole": {}})
    with pytest.raises(Exception, match="asks for stress"):
        read(store, {"energy": {"stress": True}})
    with pytest.raises(Exception, match="stored in Å"):
        read(store, {"energy": {}}, length_unit="bohr")
    dataset, info = read(store, {"energy": {"forces": False}})
    assert info["energy"].gradients == [] and dataset[0].forces == {}


def test_failed_pack_leaves_no_file(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    frames = ase.io.read(os.path.join(RESOURCES, "ethanol_reduced_100.xyz"), ":5")
    ase.io.write("ethanol.xyz", frames)
    with open("old.atd", "wb") as file:
        file.write(b"previous content")
    argv = ["data", "pack", "ethanol.xyz", "-o", "old.atd"]
    error = error_of(capsys, [*argv, "--targets", "{energy: {key: wrong}}"])
    assert "'wrong'" in error
    with open("old.atd", "rb") as file:
        assert file.read() == b"previous content"  # untouched
    assert glob.glob(".tmp-*") == []
    error = error_of(capsys, ["data", "pack", "missing.xyz", "-o", "x.atd"])
    assert "'missing.xyz' does not exist" in error
