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
