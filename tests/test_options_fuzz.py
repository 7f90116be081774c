"""Random option trees and overrides: a valid configuration or a clear error."""

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from atomtrain.errors import UserError
from atomtrain.options.load import apply_overrides, expand_options


KEYS = [
    "architecture", "name", "model", "training", "training_set", "validation_set",
    "test_set", "systems", "targets", "energy", "forces", "stress", "virial", "key",
    "unit", "read_from", "length_unit", "per_atom", "quantity", "seed", "device",
    "base_precision", "loss", "type", "weight", "num_epochs", "batch_size",
    "soap", "cutoff", "bpnn", "soap_bpnn", "num_subtargets", "unknown",
]  # fmt: skip
scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-5, 100), st.floats(allow_nan=True),
    st.sampled_from(KEYS), st.sampled_from(["a.xyz", "eV", "kcal/mol", "mse", ""]),
)  # fmt: skip
trees = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=3),
        st.dictionaries(st.sampled_from(KEYS), children, max_size=4),
    ),
    max_leaves=20,
)
VALID = {
    "architecture": {"name": "soap_bpnn"},
    "training_set": {"systems": "a.xyz", "targets": {"energy": {"forces": True}}},
}


def _check(options) -> None:
    try:
        result = expand_options(options)
    except UserError as error:
        assert str(error).strip(), "an error must say what is wrong"
        return
    assert result["architecture"]["name"] == "soap_bpnn"
    assert isinstance(result["seed"], int)


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(st.sampled_from(KEYS), trees, max_size=6))
def test_random_trees(tree):
    _check(tree)


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(st.sampled_from(KEYS), trees, max_size=3))
def test_random_changes_to_a_valid_file(changes):
    _check({**VALID, **changes})


overrides = st.lists(
    st.builds(
        lambda path, value: f"{'.'.join(path)}={value}",
        st.lists(st.sampled_from(KEYS), min_size=1, max_size=4),
        st.sampled_from(["1", "-1", "0.5", "true", "null", "[1, 2]", "{a: 1}", "x",
                         "eV", ":", "soap_bpnn", "{", ""]),
    )
    | st.sampled_from(["no-equals-sign", "=3", "..=1"]),
    max_size=4,
)  # fmt: skip


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(overrides)
def test_random_overrides(items):
    try:
        options = apply_overrides(VALID, items)
    except UserError:
        return
    _check(options)
