"""ACE-MP runs the architecture conformance suite."""

from atomtrain.testing import ArchitectureTests


class TestAceMp(ArchitectureTests):
    architecture = "ace_mp"
    model_hypers = {"channels": 8, "l_max": 2, "radial_hidden": 8, "num_radial": 4}


def _resolve(user):
    from atomtrain.architectures.hypers import resolve_hypers
    from atomtrain.architectures.registry import import_documentation

    hypers = import_documentation("ace_mp").ModelHypers
    return resolve_hypers(hypers, user, "architecture.model", "ace_mp")


def test_presets_set_sizes_and_user_keys_win():
    assert _resolve({})["channels"] == 32  # medium by default
    small = _resolve({"preset": "small"})
    assert (small["channels"], small["l_max"]) == (16, 2)
    large = _resolve({"preset": "large", "l_max": 2})
    assert (large["channels"], large["l_max"]) == (64, 2)


def test_unknown_preset_is_refused_with_the_valid_names():
    import pytest

    from atomtrain.errors import UserError

    with pytest.raises(UserError, match="preset.*'small', 'medium', 'large'"):
        _resolve({"preset": "huge"})


def test_float32_features_keep_float64_energies_and_match_the_float64_model(tmp_path):
    """``features_in_float32``: the same weights give the float64 model's
    energies and forces to float32 rounding, the outputs stay float64 (the
    composition baseline of ethanol, ~ -4,200 eV, is not rounded to float32's
    0.5 meV), gradients reach the float64 parameters, and the exported model
    gives the in-memory numbers."""
    import copy

    import torch
    from metatomic.torch import load_atomistic_model

    from atomtrain.architectures.ace_mp.model import AceMp
    from atomtrain.architectures.hypers import defaults_of
    from atomtrain.architectures.registry import import_documentation
    from atomtrain.data.systems import compute_neighbors
    from atomtrain.evaluation.models import model_call
    from atomtrain.export import save_exported
    from atomtrain.testing.fixtures import CPU, F64, dataset_info, read_bundled, run
    from atomtrain.training.baseline_fit import fit_baselines
    from atomtrain.training.evaluate import predict

    hypers = defaults_of(import_documentation("ace_mp").ModelHypers)
    hypers.update(channels=8, l_max=3, hidden_l_max=2, radial_hidden=8)
    ethanol = read_bundled("ethanol")
    info = dataset_info(targets={"energy": _energy_with_forces()})
    torch.manual_seed(0)
    reference = AceMp(hypers, info).to(torch.float64)
    with torch.no_grad():
        fit_baselines(reference, ethanol, info)
        for key, value in reference.named_parameters():
            if ".products." in key:  # away from the initial, nearly linear, values
                value.add_(0.3 * torch.randn_like(value))
    mixed = AceMp({**hypers, "features_in_float32": True}, info).to(torch.float64)
    mixed.load_state_dict(copy.deepcopy(reference.state_dict()))
    expected, actual = run(reference.eval(), ethanol), run(mixed.eval(), ethanol)
    energies, forces = actual.values["energy"], actual.forces["energy"]
    assert energies.dtype == forces.dtype == torch.float64
    assert float(energies.abs().min()) > 1000.0  # absolute energies, in eV
    difference = (energies - expected.values["energy"]).abs().max()
    assert 0.0 < float(difference) < 1e-4  # float32 features, float64 sums
    torch.testing.assert_close(forces, expected.forces["energy"], rtol=0, atol=1e-4)
    assert float((forces - expected.forces["energy"]).abs().max()) > 0.0

    requests = mixed.requested_neighbor_lists()
    compute_neighbors(ethanol, requests)
    trained = predict(mixed, ethanol, requests, info.targets, F64, CPU, training=True)
    trained.values["energy"].sum().backward()
    gradients = [p.grad for p in mixed.parameters() if p.grad is not None]
    assert gradients and all(g.dtype == torch.float64 for g in gradients)

    path = str(tmp_path / "model.pt")
    save_exported(mixed.export(), path)
    loaded = load_atomistic_model(path)
    through_export = run(mixed, ethanol, call=model_call(loaded))
    torch.testing.assert_close(through_export.values["energy"], energies.detach())


def _energy_with_forces():
    from atomtrain.data.info import TargetInfo

    return TargetInfo("energy", gradients=["positions"])
