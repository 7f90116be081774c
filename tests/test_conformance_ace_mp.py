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
