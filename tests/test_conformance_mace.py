"""experimental.mace runs the architecture conformance suite (needs mace-torch)."""

import pytest


pytest.importorskip("mace")

from atomtrain.data.info import TargetInfo  # noqa: E402
from atomtrain.errors import UserError  # noqa: E402
from atomtrain.testing import ArchitectureTests  # noqa: E402
from atomtrain.testing.fixtures import dataset_info, energy_targets  # noqa: E402


class TestMace(ArchitectureTests):
    architecture = "experimental.mace"
    # tiny: the suite builds this model many times on two shared CPU cores
    model_hypers = {
        "hidden_irreps": "8x0e + 8x1o",
        "max_ell": 2,
        "correlation": 2,
        "num_radial_basis": 4,
        "radial_MLP": [8],
        "MLP_irreps": "4x0e",
        "avg_num_neighbors": 8.0,
    }

    def test_interaction_range_covers_every_layer(self, exported, hypers):
        range_ = exported[1].capabilities().interaction_range
        assert range_ == hypers["r_max"] * hypers["num_interactions"]

    # MACE does not grow to new elements or targets: it says so clearly
    def test_restart_with_new_atomic_type(self, build):
        with pytest.raises(UserError, match="new atomic types \\[7\\]"):
            build().restart(dataset_info(types=[1, 6, 7, 8]))

    def test_restart_with_new_target(self, build):
        extra = TargetInfo("atomtrain::extra", quantity="extra", unit="")
        info = dataset_info(targets={**energy_targets(), extra.name: extra})
        with pytest.raises(UserError, match="new targets"):
            build().restart(info)


def test_refuses_targets_other_than_energy():
    from atomtrain.architectures.hypers import defaults_of
    from atomtrain.architectures.registry import (
        import_architecture,
        import_documentation,
    )

    extra = TargetInfo("atomtrain::dipole", quantity="dipole", num_subtargets=3)
    arch = import_architecture("experimental.mace")
    hypers = defaults_of(import_documentation("experimental.mace").ModelHypers)
    with pytest.raises(UserError, match="fits only energies"):
        arch.__model__(hypers, dataset_info(targets={extra.name: extra}))


@pytest.fixture(scope="module")
def untrained():
    """A float64 model with a zero baseline: its energies are MACE's own."""
    import torch

    from atomtrain.architectures.hypers import resolve_hypers
    from atomtrain.architectures.registry import (
        import_architecture,
        import_documentation,
    )

    documentation = import_documentation("experimental.mace")
    hypers = resolve_hypers(
        documentation.ModelHypers, TestMace.model_hypers, "model", "mace"
    )
    torch.manual_seed(1)
    model = import_architecture("experimental.mace").__model__(hypers, dataset_info())
    with torch.no_grad():  # weights away from their initial values
        for parameter in model.parameters():
            parameter.add_(0.1 * torch.randn_like(parameter))
    return model.to(torch.float64).eval()


def test_matches_mace_forward(untrained):
    """Energies, forces and stress equal those of mace.modules.MACE.forward (which
    builds its edge vectors from positions and shifts) with the same weights."""
    import torch

    from atomtrain.architectures.experimental.mace.model import build_mace
    from atomtrain.data.systems import compute_neighbors
    from atomtrain.testing.fixtures import fresh, read_bundled, run

    structures = [fresh(s) for s in read_bundled("carbon")[:3]]
    expected = run(untrained, structures)
    mace = build_mace(untrained.hypers, [1, 6, 8], ["energy"]).to(torch.float64)
    missing, unexpected = mace.load_state_dict(untrained.state_dict(), strict=False)
    assert not [k for k in unexpected if not k.startswith("baselines.")], unexpected
    assert set(missing) <= {"atomic_numbers", "r_max", "num_interactions"} | {
        "atomic_energies_fn.atomic_energies"
    }, missing
    compute_neighbors(structures, untrained.requested_neighbor_lists())
    key = (float(untrained.hypers["r_max"]), True)
    edges, shifts, offset = [], [], 0
    for s in structures:
        samples = s.neighbors[key].to(torch.long)
        edges.append(samples[:, :2].T + offset)
        shifts.append(samples[:, 2:].to(torch.float64))
        offset += len(s)
    cells = [s.cell.to(torch.float64) for s in structures]
    unit_shifts = torch.cat(shifts)
    batch = torch.cat([torch.full((len(s),), i) for i, s in enumerate(structures)])
    type_index = untrained.type_index(torch.cat([s.types for s in structures]))
    data = {
        "positions": torch.cat([s.positions for s in structures]).to(torch.float64),
        "node_attrs": torch.nn.functional.one_hot(type_index, 3).to(torch.float64),
        "edge_index": torch.cat(edges, dim=1),
        "unit_shifts": unit_shifts,
        "shifts": torch.cat([u @ c for u, c in zip(shifts, cells)]),
        "cell": torch.cat(cells),
        "batch": batch,
        "ptr": torch.tensor([0] + [len(s) for s in structures]).cumsum(0),
    }
    out = mace(data, compute_force=True, compute_stress=True)
    torch.testing.assert_close(
        out["energy"].reshape(-1, 1), expected.values["energy"], rtol=1e-10, atol=1e-10
    )
    torch.testing.assert_close(
        out["forces"], expected.forces["energy"], rtol=1e-9, atol=1e-10
    )
    torch.testing.assert_close(
        out["stress"], expected.stress["energy"], rtol=1e-9, atol=1e-10
    )


def test_forces_and_stress_by_finite_differences(untrained):
    """Forces are -dE/dx and the stress dE/dstrain / V, by central differences."""
    import torch

    from atomtrain.testing.fixtures import fresh, read_bundled, run

    structure = read_bundled("carbon")[0]
    got = run(untrained, [structure])
    h = 1e-5

    def energy(positions, cell):
        return float(
            run(untrained, [fresh(structure, positions, cell)]).values["energy"]
        )

    positions, cell = structure.positions.double(), structure.cell.double()
    for atom, axis in [(0, 0), (1, 2), (len(structure) - 1, 1)]:
        step = torch.zeros_like(positions)
        step[atom, axis] = h
        derivative = energy(positions + step, cell) - energy(positions - step, cell)
        torch.testing.assert_close(
            -derivative / (2 * h),
            float(got.forces["energy"][atom, axis]),
            rtol=1e-5,
            atol=1e-7,
        )
    volume = float(torch.det(cell).abs())
    for i, j in [(0, 0), (0, 1), (2, 1)]:
        strain = torch.eye(3, dtype=torch.float64)
        strain[i, j] += h
        plus = energy(positions @ strain, cell @ strain)
        strain[i, j] -= 2 * h
        minus = energy(positions @ strain, cell @ strain)
        torch.testing.assert_close(
            (plus - minus) / (2 * h) / volume,
            float(got.stress["energy"][0, i, j]),
            rtol=1e-5,
            atol=1e-7,
        )


def test_two_energy_targets():
    """Each energy target is a read-out column (a MACE head) of its own, with its
    own baseline: same features, different energies."""
    import torch

    from atomtrain.architectures.hypers import resolve_hypers
    from atomtrain.architectures.registry import (
        import_architecture,
        import_documentation,
    )
    from atomtrain.testing.fixtures import read_bundled, run

    targets = {
        "energy": TargetInfo("energy", gradients=["positions"]),
        "mtt::energy_b": TargetInfo("mtt::energy_b", gradients=["positions"]),
    }
    documentation = import_documentation("experimental.mace")
    hypers = resolve_hypers(
        documentation.ModelHypers, TestMace.model_hypers, "model", "mace"
    )
    model = import_architecture("experimental.mace").__model__(
        hypers, dataset_info(targets=targets)
    )
    assert set(model.supported_outputs()) == set(targets)
    with torch.no_grad():
        model.baselines["mtt::energy_b"].composition.fill_(1.0)
    batch = run(model.to(torch.float64).eval(), read_bundled("ethanol")[:2])
    first, second = batch.values["energy"], batch.values["mtt::energy_b"]
    assert first.shape == second.shape == (2, 1)
    assert not torch.allclose(first + 9.0, second)  # different read-outs
    assert bool(torch.isfinite(batch.forces["mtt::energy_b"]).all())
