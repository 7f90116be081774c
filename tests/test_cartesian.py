"""Cartesian targets (vectors and rank-2 tensors) rotate with the structure."""

import pytest
import torch
from metatomic.torch import ModelOutput

from atomtrain.architectures.hypers import deep_merge, defaults_of
from atomtrain.architectures.registry import import_architecture, import_documentation
from atomtrain.data.info import DatasetInfo, TargetInfo
from atomtrain.data.systems import compute_neighbors, make_system
from atomtrain.errors import UserError
from atomtrain.testing.fixtures import fresh, random_rotation, read_bundled


F64 = torch.float64
CPU = torch.device("cpu")
TARGETS = {
    "atomtrain::dipole": TargetInfo("atomtrain::dipole", "dipole", "e*A", rank=1),
    "atomtrain::alpha": TargetInfo("atomtrain::alpha", "polarizability", "A^3", rank=2),
    "atomtrain::charges": TargetInfo(
        "atomtrain::charges", "charge", "e", per_atom=True, rank=1
    ),
}


def gnn(targets=TARGETS):
    hypers = deep_merge(
        defaults_of(import_documentation("gnn").ModelHypers),
        {"width": 16, "num_vectors": 4, "num_heads": 2, "head_width": 16},
    )
    torch.manual_seed(0)
    model = import_architecture("gnn").__model__(
        hypers, DatasetInfo([1, 6, 8], targets)
    )
    with torch.no_grad():
        for head in model.cartesian_heads.values():
            head.baseline.composition.normal_()
            head.baseline.scale.fill_(1.3)
    return model.to(F64)


def outputs_of(model, structure):
    requests = model.requested_neighbor_lists()
    structure = fresh(structure)
    compute_neighbors([structure], requests)
    system, _ = make_system(structure, requests, F64, CPU)
    outputs = {
        name: ModelOutput(sample_kind="atom" if t.per_atom else "system")
        for name, t in TARGETS.items()
    }
    with torch.no_grad():
        return {k: v.block() for k, v in model([system], outputs, None).items()}


def test_vectors_and_tensors_rotate_with_the_structure():
    model = gnn()
    structure = read_bundled("ethanol")[1]
    rotation = random_rotation(3).to(F64)
    before = outputs_of(model, structure)
    after = outputs_of(
        model, fresh(structure, positions=structure.positions @ rotation.T)
    )
    dipole = before["atomtrain::dipole"]
    assert [c.names for c in dipole.components] == [["xyz"]]
    assert dipole.values.shape == (1, 3, 1)
    assert float(dipole.values.abs().max()) > 1e-3  # not trivially zero
    torch.testing.assert_close(
        after["atomtrain::dipole"].values[0, :, 0], rotation @ dipole.values[0, :, 0]
    )
    alpha = before["atomtrain::alpha"]
    assert [c.names for c in alpha.components] == [["xyz_1"], ["xyz_2"]]
    tensor = alpha.values[0, :, :, 0]
    torch.testing.assert_close(tensor, tensor.T)  # symmetric
    torch.testing.assert_close(
        after["atomtrain::alpha"].values[0, :, :, 0], rotation @ tensor @ rotation.T
    )
    charges = before["atomtrain::charges"]
    assert charges.values.shape == (len(structure), 3, 1)
    torch.testing.assert_close(
        after["atomtrain::charges"].values[:, :, 0],
        charges.values[:, :, 0] @ rotation.T,
    )


def test_cartesian_outputs_export_and_agree(tmp_path):
    from metatomic.torch import load_atomistic_model

    from atomtrain.export import save_exported

    model = gnn().eval()
    path = str(tmp_path / "model.pt")
    save_exported(model.export(), path)
    exported = load_atomistic_model(path)
    structure = read_bundled("ethanol")[0]
    requests = model.requested_neighbor_lists()
    structure = fresh(structure)
    compute_neighbors([structure], requests)
    system, _ = make_system(structure, requests, F64, CPU)
    from metatomic.torch import ModelEvaluationOptions

    options = ModelEvaluationOptions(
        length_unit="angstrom",
        outputs={"atomtrain::alpha": ModelOutput(sample_kind="system")},
    )
    result = exported([system], options, check_consistency=True)
    expected = outputs_of(model, structure)["atomtrain::alpha"].values
    torch.testing.assert_close(result["atomtrain::alpha"].block().values, expected)


def test_soap_bpnn_refuses_cartesian_targets():
    hypers = defaults_of(import_documentation("soap_bpnn").ModelHypers)
    with pytest.raises(UserError, match="Cartesian tensor of rank 1.*'gnn'"):
        import_architecture("soap_bpnn").__model__(
            hypers,
            DatasetInfo([1, 6, 8], {"atomtrain::dipole": TARGETS["atomtrain::dipole"]}),
        )


# ----------------------------------------------------------------------------
# end to end: a dipole and a polarizability-like tensor generated from charges


def generated_set(path: str) -> None:
    """QM9 molecules labelled with the dipole of neutralised per-element charges
    and ``sum_i a_Z (r_i - c)(r_i - c)^T`` (symmetric, rotates as a tensor)."""
    import ase.io
    import numpy as np

    frames = ase.io.read(QM9, ":60")
    charge = {1: 0.3, 6: -0.2, 7: -0.5, 8: -0.6, 9: -0.4}
    size = {1: 0.2, 6: 0.5, 7: 0.6, 8: 0.7, 9: 0.4}
    for atoms in frames:
        q = np.array([charge[z] for z in atoms.numbers])
        q -= q.mean()
        r = atoms.positions - atoms.positions.mean(0)
        a = np.array([size[z] for z in atoms.numbers])
        atoms.info = {
            "dipole": q @ r,
            "tensor": np.einsum("i,ix,iy->xy", a, r, r).ravel(),
        }
        atoms.calc = None
    ase.io.write(path, frames)


QM9 = None


@pytest.fixture
def cartesian_run(tmp_path, monkeypatch):
    global QM9
    import os

    import yaml

    QM9 = os.path.join(os.path.dirname(__file__), "resources", "qm9_reduced_100.xyz")
    monkeypatch.chdir(tmp_path)
    generated_set("generated.xyz")
    options = {
        "architecture": {
            "name": "gnn",
            "model": {"width": 32, "num_vectors": 8, "num_heads": 2},
            "training": {"num_epochs": 25, "batch_size": 10, "learning_rate": 3e-3},
        },
        "training_set": {
            "systems": "generated.xyz",
            "targets": {
                "dipole": {"type": {"cartesian": {"rank": 1}}, "unit": "e*A"},
                "tensor": {"type": {"cartesian": {"rank": 2}}, "unit": "A^2"},
            },
        },
        "validation_set": 0.2,
        "seed": 1,
        "base_precision": 64,
        "logging": {"plots": False},
    }
    with open("options.yaml", "w") as file:
        yaml.safe_dump(options, file)
    return tmp_path


def test_gnn_learns_cartesian_targets_and_exports_them(cartesian_run):
    import csv

    import ase.io
    import numpy as np

    from atomtrain.cli import main

    assert main(["train", "options.yaml", "--output-dir", "run"]) == 0
    with open("run/train.csv", newline="") as file:
        rows = list(csv.DictReader(file))
    first, last = rows[0], rows[-1]
    for column in ("val dipole MAE (e*A)", "val tensor MAE (A^2)"):
        assert float(last[column]) < 0.5 * float(first[column]), column

    # the exported model, through eval, predicts vectors that rotate
    frames = ase.io.read("generated.xyz", ":5")
    rotation = random_rotation(7).numpy()
    rotated = [atoms.copy() for atoms in frames]
    for atoms in rotated:
        atoms.positions = atoms.positions @ rotation.T
    ase.io.write("plain.xyz", frames)
    ase.io.write("rotated.xyz", rotated)
    for name in ("plain", "rotated"):
        assert main(["eval", "model.pt", f"{name}.xyz", "-o", f"{name}_pred.xyz"]) == 0

    def value(atoms, key, shape):  # ASE moves a "dipole" to the calculator
        results = atoms.calc.results if atoms.calc is not None else {}
        return np.asarray(atoms.info.get(key, results.get(key))).reshape(shape)

    plain = ase.io.read("plain_pred.xyz", ":")
    turned = ase.io.read("rotated_pred.xyz", ":")
    assert np.abs(value(plain[1], "dipole", 3)).max() > 1e-3  # not trivially 0
    for a, b in zip(plain, turned):
        dipole = value(a, "dipole", 3)
        np.testing.assert_allclose(value(b, "dipole", 3), rotation @ dipole, atol=1e-6)
        tensor = value(a, "tensor", (3, 3))
        np.testing.assert_allclose(
            value(b, "tensor", (3, 3)), rotation @ tensor @ rotation.T, atol=1e-6
        )


def test_cartesian_target_with_forces_is_refused(cartesian_run):
    import yaml

    from atomtrain.cli import main

    options = yaml.safe_load(open("options.yaml"))
    options["training_set"]["targets"]["dipole"]["forces"] = {"key": "forces"}
    yaml.safe_dump(options, open("options.yaml", "w"))
    assert main(["train", "options.yaml"]) == 1
