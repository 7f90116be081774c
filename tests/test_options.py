"""Options: short forms, ``-o`` overrides, defaults and clear validation errors."""

import pytest
import yaml

from atomtrain.architectures.hypers import defaults_of
from atomtrain.architectures.registry import import_documentation
from atomtrain.cli import main
from atomtrain.errors import UserError
from atomtrain.options.expand import expand_dataset
from atomtrain.options.load import apply_overrides, expand_options, load_options


BASE = {"architecture": {"name": "soap_bpnn"}, "training_set": "data.xyz"}


def expand(options=None, overrides=()):
    return expand_options(apply_overrides(options or BASE, list(overrides)))


def error_of(options=None, overrides=()) -> str:
    with pytest.raises(UserError) as error:
        expand(options, overrides)
    return str(error.value)


# ---------------------------------------------------------------- short forms
def test_training_set_file_name():
    options = expand({**BASE, "training_set": "data.xyz"})
    section = options["training_set"]
    assert section["systems"] == {
        "read_from": "data.xyz",
        "reader": "ase",
        "length_unit": "angstrom",
    }
    energy = section["targets"]["energy"]
    assert energy["key"] == "energy" and energy["unit"] == "eV"
    assert energy["read_from"] == "data.xyz" and energy["quantity"] == "energy"
    # gradients are read when the file has them
    assert energy["forces"] == {"read_from": "data.xyz", "key": "forces", "auto": True}
    assert energy["stress"]["auto"] and energy["virial"]["auto"]


def test_systems_file_name():
    section = expand_dataset(
        {"systems": "a.xyz", "targets": {"energy": {"key": "U0"}}}, "training_set"
    )
    assert section["systems"] == {
        "read_from": "a.xyz",
        "reader": "ase",
        "length_unit": "angstrom",
    }
    assert section["targets"]["energy"]["key"] == "U0"
    assert section["targets"]["energy"]["read_from"] == "a.xyz"


@pytest.mark.parametrize(
    "forces, expected",
    [
        (True, {"read_from": "a.xyz", "key": "forces", "auto": False}),
        ("force", {"read_from": "a.xyz", "key": "force", "auto": False}),
        ({"key": "force"}, {"read_from": "a.xyz", "key": "force", "auto": False}),
        (
            {"key": "f", "read_from": "b.xyz"},
            {"read_from": "b.xyz", "key": "f", "auto": False},
        ),
        (False, False),
    ],
)
def test_forces_short_forms(forces, expected):
    options = expand(
        {
            **BASE,
            "training_set": {
                "systems": "a.xyz",
                "targets": {"energy": {"forces": forces}},
            },
        }
    )
    assert options["training_set"]["targets"]["energy"]["forces"] == expected


def test_target_as_key_name_and_architecture_as_name():
    options = expand(
        {
            "architecture": "soap_bpnn",
            "training_set": {"systems": "q.xyz", "targets": {"energy": "U0"}},
        }
    )
    assert options["architecture"]["name"] == "soap_bpnn"
    assert options["training_set"]["targets"]["energy"]["key"] == "U0"


def test_loss_short_forms():
    assert expand({**BASE, "loss": "mae"})["loss"]["energy"]["type"] == "mae"
    loss = expand({**BASE, "loss": {"energy": {"weight": 2, "forces": 0.5}}})["loss"]
    assert loss["energy"]["weight"] == 2.0
    assert loss["energy"]["forces"] == {"type": "mse", "weight": 0.5, "delta": 1.0}
    assert expand(BASE)["loss"]["energy"]["type"] == "mse"


def test_dataset_lists_and_fractions():
    options = expand(
        {
            **BASE,
            "training_set": ["a.xyz", "b.xyz"],
            "validation_set": "v.xyz",
            "test_set": 0.25,
        }
    )
    assert [d["systems"]["read_from"] for d in options["training_set"]] == [
        "a.xyz",
        "b.xyz",
    ]
    assert options["validation_set"]["systems"]["read_from"] == "v.xyz"
    assert options["test_set"] == 0.25
    assert expand(BASE)["validation_set"] == 0.1


# ------------------------------------------------------------------ overrides
def test_overrides_are_typed_by_yaml():
    options = expand(
        overrides=[
            "architecture.training.num_epochs=5",
            "architecture.training.learning_rate=0.02",
            "architecture.model.bpnn.layernorm=false",
            "architecture.model.soap.cutoff=4",
            "device=cpu",
            "seed=12",
            "validation_set=0.25",
            "base_precision=64",
        ]
    )
    training = options["architecture"]["training"]
    assert training["num_epochs"] == 5 and isinstance(training["num_epochs"], int)
    assert training["learning_rate"] == 0.02
    assert options["architecture"]["model"]["bpnn"]["layernorm"] is False
    assert options["architecture"]["model"]["soap"]["cutoff"] == 4.0
    assert options["device"] == "cpu"
    assert options["seed"] == 12
    assert options["validation_set"] == 0.25
    assert options["base_precision"] == 64


def test_overrides_replace_sections_and_create_missing_ones():
    options = expand(
        overrides=["training_set=other.xyz", "loss.energy.forces.weight=3"]
    )
    assert options["training_set"]["systems"]["read_from"] == "other.xyz"
    assert options["loss"]["energy"]["forces"]["weight"] == 3.0
    value = apply_overrides({}, ["a.b.c={x: [1, 2]}"])
    assert value == {"a": {"b": {"c": {"x": [1, 2]}}}}


def test_overrides_do_not_touch_the_input():
    original = {"architecture": {"name": "soap_bpnn"}}
    apply_overrides(original, ["architecture.training.num_epochs=3"])
    assert original == {"architecture": {"name": "soap_bpnn"}}


@pytest.mark.parametrize(
    "override, message",
    [
        ("num_epochs", "must look like 'key.path=value'"),
        ("architecture.name.x=1", "'name' is not a section"),
    ],
)
def test_malformed_overrides(override, message):
    with pytest.raises(UserError, match=message):
        apply_overrides(BASE, [override])


def test_load_options_from_file(tmp_path):
    path = tmp_path / "options.yaml"
    path.write_text(yaml.safe_dump({**BASE, "seed": 4}))
    options = load_options(str(path), ["architecture.training.batch_size=2"])
    assert options["seed"] == 4
    assert options["architecture"]["training"]["batch_size"] == 2


def test_random_seed_when_none_given():
    seed = expand(BASE)["seed"]
    assert isinstance(seed, int) and seed >= 0


# ------------------------------------------------------------------- defaults
def test_defaults_come_from_the_architecture_documentation():
    documentation = import_documentation("soap_bpnn")
    model_defaults = defaults_of(documentation.ModelHypers)
    training_defaults = defaults_of(documentation.TrainerHypers)
    options = expand(
        overrides=[
            "architecture.model.soap.max_radial=3",
            "architecture.training.num_epochs=7",
        ]
    )
    model = options["architecture"]["model"]
    assert model["soap"] == {**model_defaults["soap"], "max_radial": 3}
    assert model["bpnn"] == model_defaults["bpnn"]
    training = options["architecture"]["training"]
    assert training == {**training_defaults, "num_epochs": 7}
    assert set(options) == {
        "architecture",
        "training_set",
        "validation_set",
        "test_set",
        "seed",
        "device",
        "base_precision",
        "loss",
        "logging",
        "uncertainty",
    }
    assert (options["device"], options["base_precision"]) == ("auto", 32)
    assert options["uncertainty"] is False
    assert options["test_set"] == 0.0


def test_defaults_are_not_shared_between_runs():
    first = expand(overrides=["architecture.model.soap.max_radial=2"])
    second = expand()
    assert first["architecture"]["model"]["soap"]["max_radial"] == 2
    assert second["architecture"]["model"]["soap"]["max_radial"] == 6


# --------------------------------------------------------------- unknown keys
@pytest.mark.parametrize(
    "options, overrides, path, suggestion",
    [
        (
            BASE,
            ["architecture.training.num_epoch=3"],
            "architecture.training.num_epoch",
            "num_epochs",
        ),
        (
            {"architecture": {"name": "soap_bpnn"}, "trainig_set": "data.xyz"},
            [],
            "trainig_set",
            "training_set",
        ),
        ({**BASE, "validaton_set": 0.1}, [], "validaton_set", "validation_set"),
        (
            BASE,
            ["architecture.model.soap.cutof=3"],
            "architecture.model.soap.cutof",
            "cutoff",
        ),
        (
            BASE,
            ["architecture.model.bpnn.num_neurons=3"],
            "architecture.model.bpnn.num_neurons",
            "num_neurons_per_layer",
        ),
        (BASE, ["architecture.modle.x=3"], "architecture.modle", "model"),
        (
            {
                **BASE,
                "training_set": {
                    "systems": "a.xyz",
                    "targets": {"energy": {"kye": "e"}},
                },
            },
            [],
            "training_set.targets.energy.kye",
            "key",
        ),
        (
            {
                **BASE,
                "training_set": {
                    "systems": {"read_from": "a.xyz", "reder": "ase"},
                    "targets": {"energy": {}},
                },
            },
            [],
            "training_set.systems.reder",
            "reader",
        ),
        (BASE, ["loss.energy.wieght=2"], "loss.energy.wieght", "weight"),
        (BASE, ["loss.energi=2"], "loss.energi", "energy"),
    ],
)
def test_unknown_key_names_path_and_closest_key(options, overrides, path, suggestion):
    message = error_of(options, overrides)
    assert f"'{path}'" in message
    assert f"Did you mean '{suggestion}'?" in message


def test_unknown_key_through_the_cli(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "options.yaml").write_text(yaml.safe_dump(BASE))
    code = main(["train", "options.yaml", "-o", "architecture.training.num_epoch=2"])
    assert code == 1
    err = capsys.readouterr().err
    assert err.startswith("atomtrain train: error: unknown 'soap_bpnn' hyperparameter")
    assert "'architecture.training.num_epoch'" in err and "'num_epochs'" in err
    assert "Traceback" not in err
    assert not (tmp_path / "outputs").exists()  # nothing written for bad options


# ----------------------------------------------------------------- wrong types
@pytest.mark.parametrize(
    "override, path, value",
    [
        (
            "architecture.training.num_epochs=five",
            "architecture.training.num_epochs",
            "'five'",
        ),
        (
            "architecture.training.batch_size=2.5",
            "architecture.training.batch_size",
            "2.5",
        ),
        (
            "architecture.training.scheduler=linear",
            "architecture.training.scheduler",
            "'linear'",
        ),
        (
            "architecture.model.soap.max_angular=[1]",
            "architecture.model.soap.max_angular",
            "[1]",
        ),
        (
            "architecture.model.bpnn.layernorm=maybe",
            "architecture.model.bpnn.layernorm",
            "'maybe'",
        ),
        ("seed=-1", "seed", "-1"),
        ("seed=abc", "seed", "'abc'"),
        ("base_precision=16", "base_precision", "16"),
        ("device=[cpu]", "device", "['cpu']"),
        ("loss.energy.type=l3", "loss.energy.type", "'l3'"),
        ("loss.energy.weight=-1", "loss.energy.weight", "-1"),
        (
            "training_set={systems: a.xyz, targets: {energy: {per_atom: often}}}",
            "training_set.targets.energy.per_atom",
            "'often'",
        ),
        ("architecture.model=3", "architecture.model", "3"),
    ],
)
def test_wrong_type_names_path_and_value(override, path, value):
    message = error_of(BASE, [override])
    assert f"'{path}'" in message, message
    assert value in message, message
    assert message.startswith("invalid value"), message


@pytest.mark.parametrize(
    "change, message",
    [
        ({"validation_set": -0.1}, "'validation_set' is the fraction -0.1"),
        ({"test_set": 1.0}, "'test_set' is the fraction 1.0"),
        ({"validation_set": 0.5, "test_set": 0.5}, "must be below 1"),
        ({"architecture": {"name": "soap_bpn"}}, "Did you mean 'soap_bpnn'?"),
        ({"training_set": {"systems": "a.xyz"}}, "training_set has no targets"),
        (
            {"training_set": {"targets": {"energy": {}}}},
            "'training_set' has no 'systems'",
        ),
        ({"training_set": None}, "option 'training_set' must be"),
        ({"loss": {"forces": 1.0}}, "'loss.forces' refers to a target"),
        ({"loss": 3}, "option 'loss' must be"),
        (
            {"training_set": {"systems": "a.xyz", "targets": {"energy": 3}}},
            "'training_set.targets.energy' must be",
        ),
        (
            {
                "training_set": {
                    "systems": "a.xyz",
                    "targets": {"energy": {"forces": 3}},
                }
            },
            "'training_set.targets.energy.forces' must be",
        ),
    ],
)
def test_invalid_options(change, message):
    assert message in error_of({**BASE, **change})
