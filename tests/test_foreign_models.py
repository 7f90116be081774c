"""Models exported by other metatomic tools evaluate with ``atomtrain eval``:
only the outputs they declare are requested, and predictions equal the tool's
own evaluation. A stored metatrain PET model (pure TorchScript) runs
everywhere; metatrain's SOAP-BPNN, which needs compiled extensions, is trained
here when the benchmark venv of metatrain exists (see bench/compare.py)."""

import os
import shutil
import subprocess

import ase.io
import numpy as np
import pytest
import yaml

from atomtrain.cli import main
from atomtrain.errors import UserError


RESOURCES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "resources")
PET = os.path.join(RESOURCES, "metatrain_pet_water.pt")
WATER = os.path.join(RESOURCES, "water_10.xyz")
METATRAIN = os.path.join(
    os.path.dirname(RESOURCES), "..", "bench", ".venvs", "metatrain-2026.4.1"
)
TARGETS = {"energy": {"key": "energy", "unit": "eV", "forces": {"key": "forces"}}}


def test_metatrain_pet_predicts_what_metatrain_predicts(tmp_path):
    from atomtrain import evaluate

    data = {"systems": WATER, "targets": TARGETS}
    result = evaluate(PET, data, 4, output=str(tmp_path / "pred.xyz"))
    ours = ase.io.read(tmp_path / "pred.xyz", ":")
    theirs = ase.io.read(
        os.path.join(RESOURCES, "metatrain_pet_water_predictions.xyz"), ":"
    )
    assert len(ours) == len(theirs) == 10
    for mine, reference in zip(ours, theirs):
        assert mine.get_potential_energy() == pytest.approx(
            reference.get_potential_energy(), abs=1e-3
        )
        gradient = np.array(reference.info["energy_positions_gradients"])
        np.testing.assert_allclose(mine.get_forces(), -gradient, atol=1e-4)
    # metatrain's own log for these predictions: energy RMSE 28.896 meV/atom,
    # MAE 28.653; forces RMSE 797.60 meV/Å, MAE 589.16
    assert result.metrics["energy RMSE (meV/atom)"] == pytest.approx(28.896, abs=0.01)
    assert result.metrics["energy MAE (meV/atom)"] == pytest.approx(28.653, abs=0.01)
    assert result.metrics["forces RMSE (meV/Å)"] == pytest.approx(797.60, abs=0.05)
    assert result.metrics["forces MAE (meV/Å)"] == pytest.approx(589.16, abs=0.05)


def test_auxiliary_outputs_are_not_requested():
    from atomtrain import load_model
    from atomtrain.evaluation.models import model_targets

    model = load_model(PET)
    declared = set(model.capabilities().outputs.keys())
    assert "features" in declared and "energy" in declared  # what broke eval
    assert set(model_targets(model).targets) == {"energy"}


def test_a_target_the_model_lacks_is_named_with_what_it_offers(tmp_path, capsys):
    from atomtrain import evaluate

    data = {"systems": WATER, "targets": {**TARGETS, "dipole": {"key": "energy"}}}
    with pytest.raises(UserError) as error:
        evaluate(PET, data)
    message = str(error.value)
    assert "'dipole'" in message and "offers 'energy'" in message
    assert "\n" not in message
    (tmp_path / "eval.yaml").write_text(yaml.safe_dump(data))
    assert main(["eval", PET, str(tmp_path / "eval.yaml")]) == 1
    assert "offers 'energy'" in capsys.readouterr().err


def test_a_missing_extensions_folder_is_a_clear_error(tmp_path, capsys):
    argv = ["eval", PET, WATER, "--extensions", str(tmp_path / "nowhere")]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert "extensions folder" in err and "nowhere" in err


@pytest.mark.skipif(
    not os.path.exists(os.path.join(METATRAIN, "bin", "mtt")),
    reason="needs bench/.venvs/metatrain-2026.4.1, made by bench/compare.py",
)
def test_metatrain_soap_bpnn_with_extensions(tmp_path, monkeypatch):
    """metatrain's SOAP-BPNN needs sphericart's compiled extension: it loads
    with --extensions (from anywhere) and scores as ``mtt eval`` does."""
    monkeypatch.chdir(tmp_path)
    shutil.copy(WATER, "water.xyz")
    options = {
        "architecture": {
            "name": "soap_bpnn",
            "training": {"num_epochs": 1, "batch_size": 2},
        },
        "training_set": {"systems": "water.xyz", "targets": TARGETS},
        "validation_set": 0.2,
        "test_set": 0.0,
    }
    with open("options.yaml", "w") as file:
        yaml.safe_dump(options, file)
    mtt = os.path.join(METATRAIN, "bin", "mtt")
    subprocess.run([mtt, "train", "options.yaml"], check=True, capture_output=True)
    with open("eval.yaml", "w") as file:
        yaml.safe_dump({"systems": "water.xyz", "targets": TARGETS}, file)
    done = subprocess.run(
        [mtt, "eval", "model.pt", "eval.yaml", "-o", "mtt.xyz", "-e", "extensions"],
        check=True,
        capture_output=True,
        text=True,
    )
    os.makedirs("elsewhere")
    shutil.move("model.pt", "elsewhere/model.pt")
    argv = ["eval", "elsewhere/model.pt", "eval.yaml", "-o", "pred.xyz"]
    assert main(argv) == 1  # the extension is not beside the model
    assert main([*argv, "--extensions", "extensions"]) == 0
    theirs = ase.io.read("mtt.xyz", ":")
    for mine, reference in zip(ase.io.read("pred.xyz", ":"), theirs):
        assert mine.get_potential_energy() == pytest.approx(
            reference.get_potential_energy(), abs=1e-3
        )
        gradient = np.array(reference.info["energy_positions_gradients"])
        np.testing.assert_allclose(mine.get_forces(), -gradient, atol=1e-4)
    with open("pred_metrics.json") as file:
        metrics = yaml.safe_load(file)
    logged = done.stdout + done.stderr
    rmse = float(logged.split("energy RMSE (per atom): ")[1].split()[0])
    # float32 energies of ~3e4 eV are rounded to ~2 meV: 0.01 meV/atom apart
    assert metrics["energy RMSE (meV/atom)"] == pytest.approx(rmse, abs=0.01)
