"""A catalogue of bad inputs: each must end with exit code 1 and one clear
paragraph on stderr that names the culprit, never a traceback."""

import os
import shutil

import ase
import ase.io
import pytest
import torch
import yaml

from atomtrain.cli import main


RESOURCES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "resources")
TARGETS = {"energy": {"key": "energy", "unit": "kcal/mol", "forces": True}}
SMALL_MODEL = {
    "soap": {"max_radial": 3, "max_angular": 2},
    "bpnn": {"num_hidden_layers": 1, "num_neurons_per_layer": 8},
}


def options(training_set=None, **extra) -> dict:
    return {
        "architecture": {
            "name": "soap_bpnn",
            "model": SMALL_MODEL,
            "training": {"num_epochs": 1},
        },
        "training_set": training_set or {"systems": "ethanol.xyz", "targets": TARGETS},
        "validation_set": 0.2,
        "seed": 5,
        **extra,
    }


def write_yaml(path: str, data) -> None:
    with open(path, "w") as file:
        yaml.safe_dump(data, file)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A folder with ethanol.xyz and a model trained on it (model.ckpt, model.pt)."""
    folder = tmp_path_factory.mktemp("trained")
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(folder)
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        frames = ase.io.read(os.path.join(RESOURCES, "ethanol_reduced_100.xyz"), ":10")
        ase.io.write("ethanol.xyz", frames)
        write_yaml("options.yaml", options())
        try:
            assert main(["train", "options.yaml", "--output-dir", "run"]) == 0
        finally:
            torch.set_num_threads(threads)
    return folder


@pytest.fixture
def workdir(trained, tmp_path, monkeypatch):
    for name in ("ethanol.xyz", "options.yaml", "model.ckpt", "model.pt"):
        shutil.copy(trained / name, tmp_path / name)
    monkeypatch.chdir(tmp_path)
    return tmp_path


# ------------------------------------------------------- file makers for cases
def ethanol_frames(n=3):
    return ase.io.read("ethanol.xyz", f":{n}")


def train_on(training_set=None, **extra):
    """A case set-up writing bad.yaml from the given training set/options."""

    def setup():
        write_yaml("bad.yaml", options(training_set, **extra))

    return setup


def garbage(name):
    def setup():
        with open(name, "wb") as file:
            file.write(bytes(range(256)) * 8)
        write_yaml("bad.yaml", options({"systems": name, "targets": TARGETS}))

    return setup


def empty_file():
    open("empty.xyz", "w").close()
    write_yaml("bad.yaml", options({"systems": "empty.xyz", "targets": TARGETS}))


def structure_without_atoms():
    frames = ethanol_frames()
    ase.io.write("holes.xyz", [frames[0], ase.Atoms(), frames[1]])
    write_yaml("bad.yaml", options({"systems": "holes.xyz", "targets": TARGETS}))


def overlapping_atoms():
    frames = ethanol_frames()
    frames[2].positions[2] = frames[2].positions[1] + 0.01
    ase.io.write("close.xyz", frames)
    write_yaml("bad.yaml", options({"systems": "close.xyz", "targets": TARGETS}))


def nan_energy():
    frames = ethanol_frames()
    frames[2].calc.results["energy"] = float("nan")
    ase.io.write("nan.xyz", frames)
    write_yaml("bad.yaml", options({"systems": "nan.xyz", "targets": TARGETS}))


def periodic_without_cell():
    frames = ethanol_frames()
    frames[1].pbc = True
    ase.io.write("flat.xyz", frames)
    write_yaml("bad.yaml", options({"systems": "flat.xyz", "targets": TARGETS}))


def two_structures():
    ase.io.write("two.xyz", ethanol_frames(2))
    write_yaml(
        "bad.yaml",
        options({"systems": "two.xyz", "targets": TARGETS}, validation_set=0.99),
    )


def other_architecture_checkpoint():
    checkpoint = torch.load("model.ckpt", weights_only=True)
    checkpoint["architecture_name"] = "other_arch"
    torch.save(checkpoint, "other.ckpt")


def invalid_yaml():
    with open("bad.yaml", "w") as file:
        file.write("architecture:\n  name: [soap_bpnn\ntraining_set: {\n")


def yaml_list():
    write_yaml("list.yaml", ["architecture", "training_set"])


def unknown_types():
    qm9 = ase.io.read(os.path.join(RESOURCES, "qm9_reduced_100.xyz"), ":")
    with_nitrogen = [a for a in qm9 if 7 in a.numbers and 9 not in a.numbers][:2]
    assert with_nitrogen
    ase.io.write("nitrogen.xyz", ethanol_frames(2) + with_nitrogen)


def eval_options_with_missing_key():
    write_yaml(
        "eval.yaml",
        {"systems": "ethanol.xyz", "targets": {"energy": {"key": "U0"}}},
    )


def nothing():
    pass


def at_training(key, value):
    section = {"num_epochs": 1, key: value}
    return train_on(architecture={"name": "soap_bpnn", "training": section})


# id: (set-up, argv, substrings the message must contain)
CASES = {
    "missing data file": (
        train_on({"systems": "nowhere.xyz", "targets": TARGETS}),
        ["train", "bad.yaml"],
        ["'nowhere.xyz' does not exist"],
    ),
    "missing target file": (
        train_on(
            {
                "systems": "ethanol.xyz",
                "targets": {"energy": {"read_from": "energies.xyz"}},
            }
        ),
        ["train", "bad.yaml"],
        ["'energies.xyz' does not exist"],
    ),
    "garbage bytes": (
        garbage("garbage.xyz"),
        ["train", "bad.yaml"],
        ["could not read 'garbage.xyz'"],
    ),
    "empty dataset file": (empty_file, ["train", "bad.yaml"], ["empty.xyz"]),
    "structure without atoms": (
        structure_without_atoms,
        ["train", "bad.yaml"],
        ["structure 1 of 'holes.xyz' has no atoms"],
    ),
    "missing energy key": (
        train_on({"systems": "ethanol.xyz", "targets": {"energy": {"key": "U0"}}}),
        ["train", "bad.yaml"],
        ["no structure of 'ethanol.xyz' has the key 'U0'", "Keys present"],
    ),
    "missing forces key": (
        train_on(
            {
                "systems": "ethanol.xyz",
                "targets": {"energy": {"forces": {"key": "force"}}},
            }
        ),
        ["train", "bad.yaml"],
        ["no structure of 'ethanol.xyz' has the key 'force'", "forces of 'energy'"],
    ),
    "forces of the wrong shape": (
        train_on(
            {"systems": "ethanol.xyz", "targets": {"energy": {"forces": "energy"}}}
        ),
        ["train", "bad.yaml"],
        ["'ethanol.xyz'", "expected shape (9, 3)"],
    ),
    "atoms closer than 0.1 Å": (
        overlapping_atoms,
        ["train", "bad.yaml"],
        ["structure 2 of 'close.xyz'", "atoms 1 and 2", "apart"],
    ),
    "nan energy": (
        nan_energy,
        ["train", "bad.yaml"],
        ["structure 2 of 'nan.xyz'", "NaN"],
    ),
    "periodic without cell": (
        periodic_without_cell,
        ["train", "bad.yaml"],
        ["structure 1 of 'flat.xyz'", "zero volume"],
    ),
    "unknown architecture": (
        train_on(architecture={"name": "schnet"}),
        ["train", "bad.yaml"],
        ["unknown architecture 'schnet'", "Known architectures: ", "soap_bpnn"],
    ),
    "misspelt architecture": (
        train_on(architecture={"name": "soap_bpn"}),
        ["train", "bad.yaml"],
        ["'soap_bpn'", "Did you mean 'soap_bpnn'?"],
    ),
    "unknown energy unit": (
        train_on(
            {"systems": "ethanol.xyz", "targets": {"energy": {"unit": "kcal/mool"}}}
        ),
        ["train", "bad.yaml"],
        ["'kcal/mool'", "ethanol.xyz"],
    ),
    "unknown length unit": (
        train_on(
            {
                "systems": {"read_from": "ethanol.xyz", "length_unit": "furlong"},
                "targets": TARGETS,
            }
        ),
        ["train", "bad.yaml"],
        ["'furlong'", "length_unit"],
    ),
    "negative fraction": (
        train_on(validation_set=-0.2),
        ["train", "bad.yaml"],
        ["'validation_set'", "-0.2"],
    ),
    "fraction of one": (
        train_on(test_set=1.0),
        ["train", "bad.yaml"],
        ["'test_set'", "1.0"],
    ),
    "fractions sum to one": (
        train_on(validation_set=0.6, test_set=0.4),
        ["train", "bad.yaml"],
        ["validation_set (0.6)", "test_set (0.4)", "below 1"],
    ),
    "split larger than the data": (
        two_structures,
        ["train", "bad.yaml"],
        ["validation_set = 0.99", "2 training structures"],
    ),
    "unknown option": (
        train_on(trainig_set="ethanol.xyz"),
        ["train", "bad.yaml"],
        ["'trainig_set'", "Did you mean 'training_set'?"],
    ),
    "zero batch size": (
        at_training("batch_size", 0),
        ["train", "bad.yaml"],
        ["'architecture.training.batch_size'", "0"],
    ),
    "negative learning rate": (
        at_training("learning_rate", -0.01),
        ["train", "bad.yaml"],
        ["'architecture.training.learning_rate'", "-0.01"],
    ),
    "zero log interval": (
        at_training("log_interval", 0),
        ["train", "bad.yaml"],
        ["'architecture.training.log_interval'"],
    ),
    "unavailable device": (
        train_on(device="tpu7"),
        ["train", "bad.yaml"],
        ["'tpu7'", "device"],
    ),
    "checkpoint of another architecture": (
        other_architecture_checkpoint,
        ["train", "options.yaml", "--restart", "other.ckpt"],
        ["'other.ckpt'", "architecture 'other_arch'", "'soap_bpnn'"],
    ),
    "missing restart checkpoint": (
        nothing,
        ["train", "options.yaml", "--restart", "missing.ckpt"],
        ["'missing.ckpt' does not exist"],
    ),
    "exported model as restart checkpoint": (
        nothing,
        ["train", "options.yaml", "--restart", "model.pt"],
        ["'model.pt' is not a readable atomtrain checkpoint"],
    ),
    "missing options file": (
        nothing,
        ["train", "missing.yaml"],
        ["options file 'missing.yaml' does not exist"],
    ),
    "invalid yaml": (
        invalid_yaml,
        ["train", "bad.yaml"],
        ["options file 'bad.yaml' is not valid YAML"],
    ),
    "options not a mapping": (
        yaml_list,
        ["train", "list.yaml"],
        ["'list.yaml'", "mapping"],
    ),
    "malformed override": (
        nothing,
        ["train", "options.yaml", "-o", "num_epochs"],
        ["override 'num_epochs'", "key.path=value"],
    ),
    "eval with a non-model file": (
        garbage("garbage.pt"),
        ["eval", "garbage.pt", "ethanol.xyz"],
        ["'garbage.pt' is not an exported metatomic model"],
    ),
    "eval with a checkpoint": (
        nothing,
        ["eval", "model.ckpt", "ethanol.xyz"],
        ["'model.ckpt' is not an exported metatomic model", "atomtrain export"],
    ),
    "eval with a missing model": (
        nothing,
        ["eval", "nothing.pt", "ethanol.xyz"],
        ["'nothing.pt' does not exist"],
    ),
    "eval with a missing data file": (
        nothing,
        ["eval", "model.pt", "nowhere.xyz"],
        ["'nowhere.xyz' does not exist"],
    ),
    "eval with a missing key": (
        eval_options_with_missing_key,
        ["eval", "model.pt", "eval.yaml"],
        ["no structure of 'ethanol.xyz' has the key 'U0'"],
    ),
    "eval with an unknown atomic type": (
        unknown_types,
        ["eval", "model.pt", "nitrogen.xyz"],
        ["nitrogen.xyz:2", "[7]", "[1, 6, 8]"],
    ),
    "eval with batch size zero": (
        nothing,
        ["eval", "model.pt", "ethanol.xyz", "-b", "0"],
        ["--batch-size", "0"],
    ),
    "export a non-checkpoint file": (
        garbage("garbage.ckpt"),
        ["export", "garbage.ckpt"],
        ["'garbage.ckpt' is not a readable atomtrain checkpoint"],
    ),
    "export a structure file": (
        nothing,
        ["export", "ethanol.xyz"],
        ["'ethanol.xyz' is not a readable atomtrain checkpoint"],
    ),
    "export an exported model": (
        nothing,
        ["export", "model.pt", "-o", "again.pt"],
        ["'model.pt' is not a readable atomtrain checkpoint", "(.ckpt)"],
    ),
    "export a checkpoint of another architecture": (
        other_architecture_checkpoint,
        ["export", "other.ckpt"],
        ["unknown architecture 'other_arch'", "soap_bpnn"],
    ),
    "export to a name without .pt": (
        nothing,
        ["export", "model.ckpt", "-o", "model.onnx"],
        ["'model.onnx'", ".pt"],
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input(case, workdir, capsys):
    setup, argv, expected = CASES[case]
    setup()
    capsys.readouterr()
    before = sorted(os.listdir("."))

    assert main(argv) == 1

    captured = capsys.readouterr()
    err = captured.err
    assert err.startswith(f"atomtrain {argv[0]}: error: "), err
    assert "Traceback" not in err and "Traceback" not in captured.out
    paragraph = err.strip()
    assert "\n\n" not in paragraph, err  # one paragraph
    lines = paragraph.splitlines()
    assert sum(line.startswith("atomtrain ") for line in lines) == 1, err
    assert not any("Warning" in line for line in lines), err
    for text in expected:
        assert text in err, (text, err)
    # nothing half-written beside the inputs (the run folder aside)
    created = set(os.listdir(".")) - set(before) - {"outputs", "x"}
    assert not {n for n in created if n.endswith((".pt", ".ckpt", ".xyz"))}, created
