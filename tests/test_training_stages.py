"""Isolated-atom baselines of the shared loop."""

import os
import shutil

import ase.io
import pytest
import torch
import yaml
from kill_harness import prepare

from atomtrain.cli import main


ISOLATED = os.path.join(
    os.path.dirname(os.path.abspath(__file__)),
    "resources",
    "isolated_atoms_ethanol.xyz",
)


@pytest.fixture
def run(tmp_path, monkeypatch):
    """``train(*overrides)``: 4 epochs of 5 steps (18 training structures in
    batches of 4) on ethanol; returns the final checkpoint."""
    prepare(str(tmp_path), epochs=4)
    monkeypatch.chdir(tmp_path)

    def train(*overrides, output="run", restart=None):
        args = ["train", "options.yaml", "--output-dir", output]
        args += [f"-oarchitecture.training.{o}" for o in overrides]
        if restart:
            args += ["--restart", restart]
        assert main(args) == 0
        return torch.load(os.path.join(output, "model.ckpt"), weights_only=True)

    return train


# ------------------------------------------------------------ isolated atoms
def _in_ev(options_file="options.yaml"):
    """The ethanol data in eV (the isolated-atom file's unit)."""
    from atomtrain.data.units import conversion_factor

    factor = conversion_factor("kcal/mol", "eV", "test")
    frames = ase.io.read("ethanol.xyz", ":")
    for atoms in frames:
        atoms.calc.results["energy"] *= factor
        atoms.calc.results["forces"] *= factor
    ase.io.write("ethanol_ev.xyz", frames)
    options = yaml.safe_load(open(options_file))
    options["training_set"]["systems"] = "ethanol_ev.xyz"
    options["training_set"]["targets"]["energy"]["unit"] = "eV"
    yaml.safe_dump(options, open(options_file, "w"))


def test_isolated_atoms_give_the_composition_baseline(run):
    _in_ev()
    shutil.copy(ISOLATED, "isolated.xyz")
    fitted = run("num_epochs=1", output="fitted")
    checkpoint = run("num_epochs=1", "isolated_atoms={energy: isolated.xyz}")
    frames = ase.io.read(ISOLATED, ":")
    energies = {a.numbers[0]: a.get_potential_energy() for a in frames}
    expected = torch.tensor([[energies[z]] for z in (1, 6, 8)], dtype=torch.float64)
    (key,) = [k for k in checkpoint["model_state_dict"] if k.endswith("composition")]
    assert torch.equal(checkpoint["model_state_dict"][key], expected)
    assert not torch.equal(fitted["model_state_dict"][key], expected)
    scale = key.replace("composition", "scale")  # with forces: their RMS, as before
    assert torch.equal(
        checkpoint["model_state_dict"][scale], fitted["model_state_dict"][scale]
    )


def test_isolated_atoms_in_the_target_unit():
    from atomtrain.data.info import DatasetInfo, TargetInfo
    from atomtrain.data.units import conversion_factor
    from atomtrain.training.isolated_atoms import isolated_atom_energies

    options = {
        "architecture": {"training": {"isolated_atoms": {"energy": ISOLATED}}},
        "training_set": [
            {"targets": {"energy": {"key": "energy", "unit": "kcal/mol"}}},
        ],
    }
    info = DatasetInfo([1, 6, 8], {"energy": TargetInfo("energy")})
    energies = isolated_atom_energies(options, info)["energy"]
    factor = conversion_factor("kcal/mol", "eV", "test")
    assert float(energies[1]) == -13.568422383046626 * factor
    assert set(energies) == {1, 6, 7, 8}  # an element beyond the data is harmless


def _bad(capsys, *overrides):
    args = ["train", "options.yaml", *[f"-o{o}" for o in overrides]]
    assert main(args) == 1
    return capsys.readouterr().err


@pytest.mark.parametrize(
    "make, expected",
    [
        (None, ["'missing.xyz'", "does not exist"]),
        ("molecule", ["structure 0 has 2 atoms", "single atom"]),
        ("no oxygen", ["elements O", "has H, C, N"]),
        ("no energy", ["no finite energy under the key 'energy'"]),
    ],
)
def test_isolated_atoms_bad_files(tmp_path, monkeypatch, capsys, make, expected):
    prepare(str(tmp_path), epochs=1)
    monkeypatch.chdir(tmp_path)
    frames = ase.io.read(ISOLATED, ":")
    path = "missing.xyz"
    if make is not None:
        path = "bad.xyz"
        if make == "molecule":
            frames[0] = frames[0] + frames[1]
        elif make == "no oxygen":
            frames = [a for a in frames if a.numbers[0] != 8]
        else:
            frames[1].info.pop("energy", None)
            frames[1].calc = None
        ase.io.write(path, frames)
    message = _bad(capsys, f"architecture.training.isolated_atoms={{energy: {path}}}")
    assert "architecture.training.isolated_atoms.energy" in message
    for part in expected:
        assert part in message, message


def test_isolated_atoms_of_a_target_that_is_no_energy(tmp_path, monkeypatch, capsys):
    prepare(str(tmp_path), epochs=1)
    monkeypatch.chdir(tmp_path)
    shutil.copy(ISOLATED, "isolated.xyz")
    options = yaml.safe_load(open("options.yaml"))
    options["training_set"]["targets"]["gap"] = {"key": "energy"}  # quantity ''
    yaml.safe_dump(options, open("options.yaml", "w"))
    message = _bad(capsys, "architecture.training.isolated_atoms={gap: isolated.xyz}")
    assert "target 'gap' is not a per-structure energy" in message
    message = _bad(
        capsys, "architecture.training.isolated_atoms={forces: isolated.xyz}"
    )
    assert "'forces' is not a target of the training set" in message
