"""Life-cycle stages, plug-in registration, docs pages and checkpoint upgrades."""

import logging
import re
import textwrap

import pytest
import torch
import yaml

from atomtrain.architectures import registry
from atomtrain.architectures.docs import render_markdown
from atomtrain.architectures.hypers import defaults_of
from atomtrain.architectures.registry import ArchitectureSpec, import_architecture
from atomtrain.architectures.soap_bpnn import documentation as soap_docs
from atomtrain.architectures.soap_bpnn.model import SoapBpnn
from atomtrain.architectures.stages import add_months
from atomtrain.cli import main
from atomtrain.errors import UserError


def _fake_package(tmp_path, monkeypatch, name, stage, body=""):
    """A package re-using SOAP-BPNN's code, registered as a plug-in."""
    package = tmp_path / name
    package.mkdir()
    (package / "__init__.py").write_text(
        "from atomtrain.architectures.soap_bpnn import __model__, __trainer__\n"
        '__maintainers__ = [("Someone", "someone@example.org")]\n'
        + textwrap.dedent(body)
    )
    (package / "documentation.py").write_text(
        "from atomtrain.architectures.soap_bpnn.documentation import *  # noqa\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    full = name if stage == "stable" else f"{stage}.{name}"
    spec = ArchitectureSpec(full, name, stage, "plug-in fake-dist")
    monkeypatch.setattr(registry, "_plugins", lambda: [spec])
    return full


def test_experimental_architecture_warns(tmp_path, monkeypatch, caplog):
    name = _fake_package(tmp_path, monkeypatch, "shiny", "experimental")
    with caplog.at_level(logging.WARNING, logger="atomtrain"):
        module = import_architecture(name)
    assert module.__model__ is SoapBpnn
    assert "'experimental.shiny' is an experimental architecture" in caplog.text


def test_deprecated_warns_then_refuses_after_removal(tmp_path, monkeypatch, caplog):
    body = '__deprecated__ = {"since": "2026-08-31", "reason": "use soap_bpnn"}\n'
    name = _fake_package(tmp_path, monkeypatch, "oldie", "deprecated", body)
    monkeypatch.setenv("ATOMTRAIN_TODAY", "2027-02-27")
    with caplog.at_level(logging.WARNING, logger="atomtrain"):
        import_architecture(name)
    assert "deprecated since 2026-08-31" in caplog.text
    assert "removed on 2027-02-28" in caplog.text  # six months, end of month
    assert "use soap_bpnn" in caplog.text
    monkeypatch.setenv("ATOMTRAIN_TODAY", "2027-02-28")
    with pytest.raises(UserError, match="reached its removal date on 2027-02-28"):
        import_architecture(name)


def test_deprecated_without_dates_is_refused(tmp_path, monkeypatch):
    name = _fake_package(tmp_path, monkeypatch, "nodates", "deprecated")
    with pytest.raises(UserError, match="must declare in its __init__.py"):
        import_architecture(name)


def test_add_months():
    import datetime

    assert add_months(datetime.date(2026, 11, 1), 6) == datetime.date(2027, 5, 1)
    assert add_months(datetime.date(2026, 8, 31), 6) == datetime.date(2027, 2, 28)


def test_plugin_clash_names_both_sources(tmp_path, monkeypatch):
    _fake_package(tmp_path, monkeypatch, "soap_bpnn_copy", "stable")
    clash = ArchitectureSpec("soap_bpnn", "soap_bpnn_copy", "stable", "plug-in dup")
    monkeypatch.setattr(registry, "_plugins", lambda: [clash])
    with pytest.raises(UserError, match="defined twice: by in-tree .* by plug-in dup"):
        registry.all_architectures()


def test_plugin_is_listed_and_trainable_by_name(tmp_path, monkeypatch, capsys):
    name = _fake_package(tmp_path, monkeypatch, "plugged", "experimental")
    assert main(["arch", "list"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"experimental\.plugged\s+experimental\s+Someone", out)
    assert re.search(r"soap_bpnn\s+stable\s+atomtrain developers\s+installed", out)
    page = render_markdown(name)
    assert "stage **experimental**, plug-in fake-dist" in page
    assert "pip install fake-dist" in page


def test_docs_page_matches_documentation():
    page = render_markdown("soap_bpnn")
    assert page.startswith("# SOAP-BPNN\n")
    assert "pip install 'atomtrain[soap_bpnn]'" in page
    block = re.search(r"```yaml\n(.*?)```", page, re.S).group(1)
    defaults = yaml.safe_load(block)["architecture"]
    assert defaults["model"] == defaults_of(soap_docs.ModelHypers)
    trainer = defaults_of(soap_docs.TrainerHypers)
    trainer.pop("loss")
    assert defaults["training"] == trainer
    cell = r"(?:[^|\\]|\\.)+"  # a table cell, escaped pipes allowed
    pattern = rf"^\| `([\w.]+)` \| {cell} \| `([^`]*)` \|"
    rows = dict(re.findall(pattern, page, re.M))
    for section, values in defaults["model"].items():
        if not isinstance(values, dict):  # a top-level hyper, e.g. zbl
            assert rows[section] == repr(values)
            continue
        for key, value in values.items():
            assert rows[f"{section}.{key}"] == repr(value)

    def check(key, value):
        if isinstance(value, dict) and value and f"{key}.{next(iter(value))}" in rows:
            assert rows[key] == "see below"  # a nested TypedDict: its own rows
            for inner, inner_value in value.items():
                check(f"{key}.{inner}", inner_value)
        else:
            assert rows[key] == repr(value)

    for key, value in trainer.items():
        check(key, value)
    assert "Cutoff radius of the neighbour density" in page


def test_arch_docs_cli_writes_pages(tmp_path, capsys):
    assert main(["arch", "docs", "-o", str(tmp_path)]) == 0
    assert (tmp_path / "soap_bpnn.md").read_text() == render_markdown("soap_bpnn")
    assert main(["arch", "docs", "soap_bpnn"]) == 0
    assert capsys.readouterr().out == render_markdown("soap_bpnn")


@pytest.fixture
def old_checkpoint(tmp_path):
    from atomtrain.architectures.soap_bpnn.trainer import Trainer
    from atomtrain.data.info import DatasetInfo, TargetInfo
    from atomtrain.training.hypers import TrainingHypers

    hypers = defaults_of(soap_docs.ModelHypers)
    hypers["bpnn"]["num_neurons_per_layer"] = 8
    model = SoapBpnn(hypers, DatasetInfo([1, 8], {"energy": TargetInfo("energy")}))
    path = str(tmp_path / "old.ckpt")
    Trainer(defaults_of(TrainingHypers)).save_checkpoint(model, path)
    return path


def test_upgrade_command_runs_upgrades(old_checkpoint, tmp_path, monkeypatch):
    def upgrade_to_next(checkpoint):
        checkpoint["model_hypers"]["note"] = "upgraded"
        return checkpoint

    current = SoapBpnn.__checkpoint_version__  # of the old checkpoint
    step = f"upgrade_from_v{current}"
    monkeypatch.setattr(SoapBpnn, "__checkpoint_version__", current + 1)
    monkeypatch.setattr(SoapBpnn, step, upgrade_to_next, raising=False)
    new = str(tmp_path / "new.ckpt")
    assert main(["upgrade", old_checkpoint, "-o", new]) == 0
    upgraded = torch.load(new, weights_only=True)
    assert upgraded["model_ckpt_version"] == current + 1
    assert upgraded["model_hypers"]["note"] == "upgraded"
    original = torch.load(old_checkpoint, weights_only=True)
    assert original["model_ckpt_version"] == current  # the input is untouched


def test_upgrade_refuses_newer_checkpoint(old_checkpoint, capsys):
    checkpoint = torch.load(old_checkpoint, weights_only=True)
    checkpoint["model_ckpt_version"] = 7
    torch.save(checkpoint, old_checkpoint)
    assert main(["upgrade", old_checkpoint]) == 1
    error = capsys.readouterr().err
    current = SoapBpnn.__checkpoint_version__
    assert "checkpoint version 7" in error and f"(version {current})" in error
