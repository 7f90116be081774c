"""Spherical targets (irreps with o3_lambda, o3_sigma) and equivariant vectors.

Wigner matrices come from the real harmonics themselves (least squares over
sampled directions), and the harmonics are checked against metatomic's own
Wigner matrices (metatensor's convention), so the test of the models does not
rest on the convention it checks.
"""

import math

import pytest
import torch
from metatomic.torch import ModelOutput

from atomtrain.architectures.hypers import deep_merge, defaults_of
from atomtrain.architectures.registry import import_architecture, import_documentation
from atomtrain.data.info import DatasetInfo, TargetInfo
from atomtrain.data.systems import compute_neighbors, make_system
from atomtrain.errors import UserError
from atomtrain.nn.spherical import (
    SphericalHarmonics,
    cartesian_to_l1,
    symmetric_from_l0_l2,
    symmetric_to_l0,
    symmetric_to_l2,
)
from atomtrain.testing.fixtures import fresh, random_rotation, read_bundled


F64 = torch.float64
CPU = torch.device("cpu")
ALL_IRREPS = [(0, 1), (1, 1), (2, 1), (0, -1), (1, -1), (2, -1)]
SMALL = {
    "gnn": {"width": 16, "num_vectors": 4, "num_heads": 2, "head_width": 16},
    "ace_mp": {"preset": "small", "channels": 8, "hidden_l_max": 2},
}


def wigner(rotation: torch.Tensor, o3_lambda: int) -> torch.Tensor:
    """``D`` with ``Y_L(R r) = D Y_L(r)``, by least squares on 40 directions."""
    directions = torch.randn(
        40, 3, dtype=F64, generator=torch.Generator().manual_seed(3)
    )
    harmonics = SphericalHarmonics(o3_lambda).to(F64)
    start, stop = o3_lambda**2, (o3_lambda + 1) ** 2
    before = harmonics(directions)[:, start:stop]
    after = harmonics(directions @ rotation.T)[:, start:stop]
    return torch.linalg.lstsq(before, after).solution.T


def test_harmonics_follow_metatensor_convention():
    from metatomic.torch.o3 import O3Transformations

    rotation = random_rotation(11).to(F64)
    library = O3Transformations(rotation.unsqueeze(0), 2)
    for o3_lambda in range(3):
        ours = wigner(rotation, o3_lambda)
        torch.testing.assert_close(
            ours @ ours.T, torch.eye(2 * o3_lambda + 1, dtype=F64)
        )
        torch.testing.assert_close(ours, library.wigner_D_matrices(o3_lambda)[0])


def test_cartesian_to_spherical_is_exact():
    generator = torch.Generator().manual_seed(0)
    matrix = torch.randn(7, 3, 3, dtype=F64, generator=generator)
    symmetric = 0.5 * (matrix + matrix.transpose(1, 2))
    l0, l2 = symmetric_to_l0(symmetric), symmetric_to_l2(symmetric)
    torch.testing.assert_close(symmetric_from_l0_l2(l0, l2), symmetric)
    # orthonormal: the Frobenius norm is the norm of the components
    norms = torch.cat([l0, l2], dim=1).norm(dim=1)
    torch.testing.assert_close(norms, symmetric.flatten(1).norm(dim=1))
    # r r^T has components proportional to Y_2(r) and Y_1 is (y, z, x):
    # the same convention as the harmonics, one positive constant per l
    r = torch.randn(20, 3, dtype=F64, generator=generator)
    r = r / r.norm(dim=1, keepdim=True)
    y = SphericalHarmonics(2).to(F64)(r)
    l2_of_r = symmetric_to_l2(torch.einsum("nx,ny->nxy", r, r))
    torch.testing.assert_close(l2_of_r, y[:, 4:9] * math.sqrt(8 * math.pi / 15))
    torch.testing.assert_close(
        cartesian_to_l1(r), y[:, 1:4] * math.sqrt(4 * math.pi / 3)
    )


def model_of(architecture: str, targets: dict):
    hypers = deep_merge(
        defaults_of(import_documentation(architecture).ModelHypers), SMALL[architecture]
    )
    torch.manual_seed(0)
    model = import_architecture(architecture).__model__(
        hypers, DatasetInfo([1, 6, 8], targets)
    )
    with torch.no_grad():
        for heads in ("cartesian_heads", "spherical_heads"):
            for head in getattr(model, heads).values():
                head.baseline.scale.fill_(1.7)
    return model.to(F64).eval()


def predictions(model, structure, targets):
    requests = model.requested_neighbor_lists()
    structure = fresh(structure)
    compute_neighbors([structure], requests)
    system, _ = make_system(structure, requests, F64, CPU)
    outputs = {
        name: ModelOutput(sample_kind="atom" if t.per_atom else "system")
        for name, t in targets.items()
    }
    with torch.no_grad():
        return model([system], outputs, None)


SPHERICAL = {
    "atomtrain::tensor": TargetInfo(
        "atomtrain::tensor", "", "", irreps=ALL_IRREPS, num_subtargets=2
    ),
    "atomtrain::shielding": TargetInfo(
        "atomtrain::shielding", "", "", per_atom=True, irreps=[(0, 1), (2, 1)]
    ),
}


@pytest.mark.parametrize("architecture", ["gnn", "ace_mp"])
@pytest.mark.parametrize("improper", [False, True])
def test_spherical_outputs_rotate_and_reflect(architecture, improper):
    """Under ``P = +-R``, the block ``(L, sigma)`` becomes ``D_L(R) x`` times
    ``sigma (-1)^L`` when ``P`` is improper (a reflection)."""
    model = model_of(architecture, SPHERICAL)
    structure = read_bundled("ethanol")[1]
    rotation = random_rotation(5).to(F64)
    operation = -rotation if improper else rotation
    before = predictions(model, structure, SPHERICAL)
    after = predictions(
        model, fresh(structure, positions=structure.positions @ operation.T), SPHERICAL
    )
    for name, target in SPHERICAL.items():
        keys = before[name].keys
        assert keys.names == ["o3_lambda", "o3_sigma"]
        assert [tuple(k) for k in keys.values.tolist()] == target.irreps
        for (o3_lambda, o3_sigma), block in zip(target.irreps, before[name].blocks()):
            assert block.components[0].names == ["o3_mu"]
            mu = block.components[0].values.reshape(-1).tolist()
            assert mu == list(range(-o3_lambda, o3_lambda + 1))
            assert block.values.shape[-1] == target.num_subtargets
            # not trivially zero: a zero output would pass any symmetry test
            assert float(block.values.abs().max()) > 1e-7, (o3_lambda, o3_sigma)
            parity = o3_sigma * (-1) ** o3_lambda if improper else 1
            expected = parity * torch.einsum(
                "mn,anp->amp", wigner(rotation, o3_lambda), block.values
            )
            got = after[name].block({"o3_lambda": o3_lambda, "o3_sigma": o3_sigma})
            scale = float(block.values.abs().max())
            torch.testing.assert_close(
                got.values, expected, atol=1e-10 * max(1.0, scale), rtol=1e-9
            )


def test_ace_mp_predicts_vectors_per_atom():
    targets = {
        "atomtrain::field": TargetInfo(
            "atomtrain::field", "", "", per_atom=True, rank=1, num_subtargets=2
        ),
        "energy": TargetInfo("energy"),
    }
    model = model_of("ace_mp", targets)
    structure = read_bundled("ethanol")[2]
    rotation = random_rotation(8).to(F64)
    before = predictions(model, structure, targets)["atomtrain::field"].block()
    after = predictions(
        model, fresh(structure, positions=structure.positions @ rotation.T), targets
    )["atomtrain::field"].block()
    assert before.values.shape == (len(structure), 3, 2)
    assert [c.names for c in before.components] == [["xyz"]]
    assert float(before.values.abs().max()) > 1e-4
    torch.testing.assert_close(
        after.values, torch.einsum("xy,ayp->axp", rotation, before.values)
    )


@pytest.mark.parametrize("architecture", ["gnn", "ace_mp"])
def test_spherical_outputs_export_and_agree(architecture, tmp_path):
    from metatomic.torch import ModelEvaluationOptions, load_atomistic_model

    from atomtrain.export import save_exported

    model = model_of(architecture, SPHERICAL)
    path = str(tmp_path / "model.pt")
    save_exported(model.export(), path)
    exported = load_atomistic_model(path)
    declared = exported.capabilities().outputs
    assert set(SPHERICAL) <= set(declared)
    structure = read_bundled("ethanol")[0]
    requests = model.requested_neighbor_lists()
    prepared = fresh(structure)
    compute_neighbors([prepared], requests)
    system, _ = make_system(prepared, requests, F64, CPU)
    options = ModelEvaluationOptions(
        length_unit="angstrom",
        outputs={
            name: ModelOutput(sample_kind="atom" if t.per_atom else "system")
            for name, t in SPHERICAL.items()
        },
    )
    result = exported([system], options, check_consistency=True)
    expected = predictions(model, structure, SPHERICAL)
    for name in SPHERICAL:
        assert result[name].keys == expected[name].keys
        for got, want in zip(result[name].blocks(), expected[name].blocks()):
            torch.testing.assert_close(got.values, want.values)


@pytest.mark.parametrize("architecture", ["gnn", "ace_mp"])
def test_irreps_above_lambda_two_are_refused(architecture):
    target = TargetInfo("atomtrain::octupole", "", "", irreps=[(3, 1)])
    with pytest.raises(UserError, match="o3_lambda 3.*up to o3_lambda 2"):
        model_of(architecture, {target.name: target})
