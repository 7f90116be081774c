"""What people look at: progress bars (only on a terminal), plots after training
and with ``eval --plot``, the metrics table, TensorBoard and W&B loggers."""

import contextlib
import csv
import glob
import io
import logging
import os
import sys

import ase.io
import pytest
import yaml

from atomtrain.cli import main
from atomtrain.errors import UserError
from atomtrain.evaluation.tables import metrics_table
from atomtrain.options.load import expand_options
from atomtrain.training.loggers import TensorBoardLogger, WandbLogger, scalars
from atomtrain.training.progress import ProgressBars, bar
from atomtrain.training.reporting import (
    _sample,
    is_main_process,
    make_observers,
    report_after_training,
)


RESOURCES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "resources")
SMALL = [
    "-o",
    "architecture.model.bpnn.num_neurons_per_layer=16",
    "-o",
    "architecture.model.soap.max_angular=2",
    "-o",
    "architecture.model.soap.max_radial=3",
]
TARGETS = {"energy": {"key": "energy", "unit": "kcal/mol", "forces": True}}
ROW = {
    "epoch": 1,
    "learning_rate": 1e-3,
    "time_s": 0.5,
    "train loss": 0.75,
    "train forces MAE (meV/Å)": 120.0,
    "val loss": 0.5,
    "val forces MAE (meV/Å)": 100.0,
}


def has(module: str) -> bool:
    try:
        __import__(module)
    except ImportError:
        return False
    return True


def drive(observer, epochs: int = 2) -> None:
    """The events of a short training, as the loop sends them."""
    for epoch in range(1, epochs + 1):
        observer.epoch_started(epoch, 3, 0)
        for _ in range(3):
            observer.step_done(0.5)
        observer.validation_started(2)
        observer.validation_step_done()
        observer.validation_step_done()
        observer.epoch_done({**ROW, "epoch": epoch})
    observer.close()


def assert_png(path: str) -> None:
    from matplotlib.image import imread

    image = imread(path)
    height, width = image.shape[:2]
    assert image.ndim == 3 and image.shape[2] in (3, 4), image.shape
    assert 200 < height < 3000 and 200 < width < 3000, image.shape
    assert image.std() > 0.01, f"{path} is blank"


# -------------------------------------------------------------- progress bars
def test_progress_bars_are_silent_without_a_terminal(capsys):
    options = {"logging": {"progress_bar": "auto"}}
    assert make_observers(options, "unused") == []
    observer = ProgressBars(2, "auto")
    assert not observer.enabled
    drive(observer)
    progress = bar(4, "evaluation", "auto")
    progress.update(1)
    progress.close()
    out, err = capsys.readouterr()
    assert out == "" and err == ""


def test_progress_bars_are_shown_when_forced(capsys):
    stream = io.StringIO()
    observer = ProgressBars(2, "always", file=stream)
    drive(observer)
    shown = stream.getvalue()
    assert "epochs" in shown and "epoch 2" in shown and "validation" in shown
    assert "loss=0.5" in shown and "2/2" in shown
    assert capsys.readouterr().err == ""  # everything went to the given stream
    forced = make_observers({"logging": {"progress_bar": "always"}}, "unused")
    assert [type(o) for o in forced] == [ProgressBars]
    assert make_observers({"logging": {"progress_bar": "never"}}, "unused") == []


# ------------------------------------------------------------ a short training
@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One 2-epoch training with plots (and TensorBoard when installed), its
    output captured; the ``eval --plot`` tests reuse its model."""
    folder = tmp_path_factory.mktemp("trained")
    frames = ase.io.read(os.path.join(RESOURCES, "ethanol_reduced_100.xyz"), ":24")
    ase.io.write(str(folder / "ethanol.xyz"), frames)
    options = {
        "architecture": {"name": "soap_bpnn", "training": {"num_epochs": 2}},
        "training_set": {"systems": "ethanol.xyz", "targets": TARGETS},
        "validation_set": 0.2,
        "test_set": 0.2,
        "seed": 7,
        "logging": {"tensorboard": has("tensorboard")},
    }
    (folder / "options.yaml").write_text(yaml.safe_dump(options))
    out, err = io.StringIO(), io.StringIO()
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(folder)
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main(["train", "options.yaml", *SMALL, "--output-dir", "run"])
    assert code == 0, err.getvalue()
    return folder, out.getvalue(), err.getvalue()


def test_training_writes_plots_and_stays_quiet(trained):
    folder, out, err = trained
    run = folder / "run"
    for name in ("learning_curves", "parity_train", "parity_validation", "parity_test"):
        assert_png(str(run / f"{name}.png"))
    # not a terminal: no bar, no carriage return anywhere
    assert "\r" not in out + err and "it/s" not in out + err
    log = (run / "train.log").read_text()
    assert "metrics of the exported model:" in log
    header = next(line for line in log.splitlines() if "quantity" in line)
    assert header.split()[-5:] == ["quantity", "split", "MAE", "RMSE", "unit"]
    rows = [line.split() for line in log.splitlines() if "meV/" in line]
    splits = {row[-4] for row in rows if len(row) >= 6 and row[-1].startswith("meV")}
    assert {"train", "validation", "test"} <= splits, rows


def test_tensorboard_event_files_hold_the_csv_values(trained):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import (
        EventAccumulator,
    )

    run = trained[0] / "run"
    assert glob.glob(str(run / "tensorboard" / "events.out.tfevents.*"))
    events = EventAccumulator(str(run / "tensorboard"))
    events.Reload()
    with open(run / "train.csv", newline="") as file:
        rows = list(csv.DictReader(file))
    tags = events.Tags()["scalars"]
    assert "val/loss" in tags and "val/forces MAE (meV per Å)" in tags
    for tag, column in (("val/loss", "val loss"), ("train/loss", "train loss")):
        values = [(e.step, e.value) for e in events.Scalars(tag)]
        expected = [(int(r["epoch"]), float(r[column])) for r in rows]
        assert [s for s, _ in values] == [s for s, _ in expected] == [1, 2]
        for (_, value), (_, reference) in zip(values, expected):
            assert value == pytest.approx(reference, rel=1e-4)


def test_eval_plot_and_table(trained, tmp_path, caplog):
    folder = trained[0]
    eval_options = {"systems": str(folder / "ethanol.xyz"), "targets": TARGETS}
    (tmp_path / "eval.yaml").write_text(yaml.safe_dump(eval_options))
    argv = ["eval", str(folder / "model.pt"), str(tmp_path / "eval.yaml")]
    argv += ["-o", str(tmp_path / "pred.xyz"), "--plot"]
    with caplog.at_level(logging.INFO, logger="atomtrain"):
        assert main(argv) == 0
    assert_png(str(tmp_path / "pred_parity.png"))
    lines = caplog.messages
    start = next(i for i, line in enumerate(lines) if "evaluation metrics:" in line)
    header, *table = lines[start + 1 : start + 4]
    assert header.split() == ["quantity", "MAE", "RMSE", "unit"]
    assert {row.split()[0] for row in table} == {"energy", "forces"}
    # columns are aligned: each unit starts where the header's does
    assert len({line.index(line.split()[-1]) for line in (header, *table)}) == 1


# -------------------------------------------------------------------- the table
def test_metrics_table_aligns_splits():
    reports = {
        "train": {"energy RMSE (meV/atom)": 1.5, "energy MAE (meV/atom)": 1.25},
        "validation": {"forces RMSE (meV/Å)": 123.456, "forces MAE (meV/Å)": 99.0},
    }
    lines = metrics_table(reports)
    assert lines[0].split() == ["quantity", "split", "MAE", "RMSE", "unit"]
    assert lines[1].split() == ["energy", "train", "1.25", "1.5", "meV/atom"]
    assert lines[2].split() == ["forces", "validation", "99", "123.5", "meV/Å"]
    assert len({line.index(line.split()[-1]) for line in lines}) == 1
    single = metrics_table({"evaluation": reports["train"]})
    assert single[0].split() == ["quantity", "MAE", "RMSE", "unit"]
    assert metrics_table({"evaluation": {}}) == []


# ---------------------------------------------------------------------- loggers
def test_logger_names_group_by_split():
    assert scalars(ROW) == {
        "learning_rate": 1e-3,
        "time_s": 0.5,
        "train/loss": 0.75,
        "train/forces MAE (meV per Å)": 120.0,
        "val/loss": 0.5,
        "val/forces MAE (meV per Å)": 100.0,
    }


def test_tensorboard_logger_alone(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import (
        EventAccumulator,
    )

    drive(TensorBoardLogger(str(tmp_path)), epochs=3)
    events = EventAccumulator(str(tmp_path / "tensorboard"))
    events.Reload()
    assert [(e.step, e.value) for e in events.Scalars("val/loss")] == [
        (1, 0.5),
        (2, 0.5),
        (3, 0.5),
    ]


def test_wandb_offline_writes_its_run_folder(tmp_path, monkeypatch):
    pytest.importorskip("wandb")
    for name in ("CONFIG", "CACHE", "DATA", "ARTIFACT"):
        monkeypatch.setenv(f"WANDB_{name}_DIR", str(tmp_path / name.lower()))
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.delenv("WANDB_MODE", raising=False)
    settings = {"mode": "offline", "project": "atomtrain-test", "name": "short"}
    logger = WandbLogger(settings, str(tmp_path / "run"), {"seed": 7})
    drive(logger)
    runs = glob.glob(str(tmp_path / "run" / "wandb" / "offline-run-*"))
    assert len(runs) == 1, os.listdir(tmp_path / "run")
    assert glob.glob(os.path.join(runs[0], "run-*.wandb"))


@pytest.mark.parametrize("package", ["tensorboard", "wandb"])
def test_missing_logger_package_is_a_clear_error(package, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, package, None)  # import fails
    value = True if package == "tensorboard" else {"mode": "offline"}
    with pytest.raises(UserError) as error:
        make_observers({"logging": {package: value}}, str(tmp_path))
    message = str(error.value)
    assert f"logging.{package}" in message
    assert f"pip install 'atomtrain[{package}]'" in message
    assert not os.listdir(tmp_path)  # refused before anything is written


def test_missing_matplotlib_skips_plots_with_one_line(tmp_path, monkeypatch, caplog):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with caplog.at_level(logging.INFO, logger="atomtrain"):
        report_after_training(None, {}, None, None, None, {}, str(tmp_path))
    assert "pip install 'atomtrain[plots]'" in caplog.text
    assert len(caplog.records) == 1 and not os.listdir(tmp_path)


def test_only_rank_0_reports_and_large_splits_are_sampled(monkeypatch):
    assert is_main_process({})
    assert is_main_process({"RANK": "0", "WORLD_SIZE": "2"})
    assert not is_main_process({"RANK": "1", "WORLD_SIZE": "2"})
    assert not is_main_process({"SLURM_PROCID": "3", "SLURM_STEP_ID": "0"})
    assert is_main_process({"SLURM_PROCID": "3"})  # the batch script itself
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert make_observers({"logging": {"progress_bar": "always"}}, "unused") == []
    chosen, total = _sample([list(range(10)), list(range(100, 125))], 7)
    assert total == 35 and chosen == [0, 6, 101, 107, 113, 118, 124]
    assert _sample([[1, 2]], 7) == ([1, 2], 2)


# ---------------------------------------------------------------------- options
def test_logging_options_expand_and_refuse_typos():
    base = {
        "architecture": "soap_bpnn",
        "training_set": {"systems": "x.xyz", "targets": {"energy": {}}},
    }
    expanded = expand_options(base)["logging"]
    assert expanded == {
        "progress_bar": "auto",
        "plots": True,
        "tensorboard": False,
        "wandb": False,
    }
    wandb = expand_options({**base, "logging": {"wandb": True}})["logging"]["wandb"]
    assert wandb == {"project": None, "name": None, "mode": None}
    tags = {"wandb": {"mode": "offline", "tags": ["a"]}}
    passed = expand_options({**base, "logging": tags})["logging"]["wandb"]
    assert passed["tags"] == ["a"]  # other keys go on to wandb.init
    with pytest.raises(UserError, match="tensorboard"):
        expand_options({**base, "logging": {"tensorbord": True}})
    with pytest.raises(UserError, match="progress_bar"):
        expand_options({**base, "logging": {"progress_bar": "sometimes"}})
