"""``atomtrain arch check``: soap_bpnn passes; an architecture broken in one way
fails on exactly the line of that criterion."""

import os
import re
import subprocess
import sys

import pytest
import torch

from atomtrain.architectures import registry
from atomtrain.architectures.check import ruff_arguments
from atomtrain.architectures.registry import ArchitectureSpec


os.environ.setdefault("OMP_NUM_THREADS", "1")
HAS_RUFF = (
    subprocess.run(
        [sys.executable, "-m", "ruff", "--version"], capture_output=True
    ).returncode
    == 0
)


MAINTAINER = ("Ada Lovelace", "ada@lovelace.ac.uk")
MAINTAINER_LINE = '__maintainers__ = [("Ada Lovelace", "ada@lovelace.ac.uk")]'


def failed(report) -> list:
    return [r.criterion for r in report.results if not r.passed]


@pytest.fixture
def plugin(tmp_path, monkeypatch):
    """``plugin(name, stage)``: a scaffolded plug-in package in ``tmp_path``,
    registered by patching the registry; returns (registry name, package folder)."""
    from atomtrain.architectures.scaffold import scaffold

    specs = []
    modules = []
    monkeypatch.setattr(registry, "_plugins", lambda: list(specs))

    def make(name: str, stage: str = "experimental", maintainer=MAINTAINER):
        root = scaffold(name, str(tmp_path), plugin=True, maintainer=maintainer)
        monkeypatch.syspath_prepend(os.path.join(root, "src"))
        package = f"atomtrain_{name}"
        full = name if stage == "stable" else f"{stage}.{name}"
        specs.append(
            ArchitectureSpec(full, package, stage, f"plug-in atomtrain-{name}")
        )
        modules.append(package)
        return full, os.path.join(root, "src", package)

    yield make
    for package in modules:
        for module in [m for m in sys.modules if m.split(".")[0] == package]:
            del sys.modules[module]


def edit(folder: str, file: str, old: str, new: str) -> None:
    path = os.path.join(folder, file)
    with open(path) as handle:
        text = handle.read()
    assert old in text, (old, path)
    with open(path, "w") as handle:
        handle.write(text.replace(old, new))


def reformat(folder: str, module: str) -> None:
    """Keep an edited package ruff-clean (so that only the intended line fails)."""
    config = ruff_arguments(folder, module)
    ruff = [sys.executable, "-m", "ruff"]
    subprocess.run([*ruff, "check", "--fix", "-q", *config, folder], check=True)
    subprocess.run([*ruff, "format", "-q", *config, folder], check=True)


def check(name, **overrides):
    from atomtrain.architectures.check import check_architecture

    report = check_architecture(name, **overrides)
    print(report.render())
    return report


def test_soap_bpnn_passes_as_stable(capsys):
    from atomtrain.architectures.check import STABLE

    report = check(
        "soap_bpnn",
        model_hypers={
            "soap": {"max_radial": 4, "max_angular": 2},
            "bpnn": {"num_neurons_per_layer": 32},
        },
    )
    assert report.stage == "stable"
    assert [r.criterion for r in report.results] == STABLE
    assert report.passed, report.render()
    card = report.render()
    assert card.count("  PASS  ") == len(STABLE)
    assert "PASSED: all 10 criteria of the stable stage" in card


def test_generated_architecture_passes(plugin):
    name, _ = plugin("gen_ok")
    assert name == "experimental.gen_ok"
    report = check("gen_ok")  # a plug-in's short name, unambiguous
    assert report.name == name
    assert report.stage == "experimental"
    assert failed(report) == []
    assert "validation force RMSE" in report["fits"].detail


def test_no_maintainers_fails_that_line(plugin):
    name, folder = plugin("no_maint")
    edit(folder, "__init__.py", MAINTAINER_LINE, "__maintainers__ = []")
    report = check(name)
    assert failed(report) == ["maintainers"]
    card = report.render()
    assert re.search(r"FAIL  maintainers .*missing or empty", card)
    assert "how to fix: set __maintainers__" in card


def test_maintainer_without_contact_fails(plugin):
    name, folder = plugin("no_contact")
    edit(folder, "__init__.py", MAINTAINER_LINE, '__maintainers__ = ["Jo"]')
    from atomtrain.architectures.check import _Context, _Fail, _maintainers

    spec = registry.find_architecture(name)
    with pytest.raises(_Fail, match="no email or @handle in 'Jo'"):
        _maintainers(_Context(spec, {}, {}, "."))


def test_scaffold_placeholder_fails_the_maintainer_criterion(plugin):
    """A scaffold made without a maintainer holds the template's placeholder,
    and the check refuses it: a criterion the template passes checks nothing."""
    name, folder = plugin("placeholder", maintainer=None)
    with open(os.path.join(folder, "__init__.py")) as file:
        assert '("Your Name", "you@example.com")' in file.read()
    report = check(name)
    assert failed(report) == ["maintainers"]
    detail = report["maintainers"].detail
    assert "you@example.com" in detail and "reserved for examples" in detail
    assert "not the scaffold's placeholder" in report["maintainers"].fix


@pytest.mark.parametrize(
    "entry, problem",
    [
        (("Your Name", "you@example.com"), "reserved for examples"),
        (("Ada Lovelace", "ada@example.org"), "reserved for examples"),
        (("Ada Lovelace", "ada@mail.example.net"), "reserved for examples"),
        (("Ada Lovelace", "ada@lovelace.example"), "reserved domain"),
        (("Ada Lovelace", "ada@localhost.test"), "reserved domain"),
        (("Your Name", "ada@lovelace.ac.uk"), "'Your Name' is a placeholder"),
        (("", "ada@lovelace.ac.uk"), "'' is a placeholder"),
        (("Ada Lovelace", ""), "no email or @handle"),
        (("Ada Lovelace",), "no email or @handle"),
        ("Ada Lovelace <you@example.com>", "reserved for examples"),
        (("Ada Lovelace", "ada@lovelace.ac.uk"), None),
        (("Ada Lovelace", "@ada"), None),
        ("Ada Lovelace <ada@lovelace.ac.uk>", None),
        (("atomtrain developers", "@atomtrain"), None),
    ],
)
def test_maintainer_entries(entry, problem):
    from atomtrain.architectures.check import _maintainer_problem

    found = _maintainer_problem(entry)
    if problem is None:
        assert found is None
    else:
        assert found is not None and problem in found, found


def test_in_tree_architectures_name_real_maintainers():
    from atomtrain.architectures.check import _maintainer_problem
    from atomtrain.architectures.stages import declarations

    for name, spec in registry.all_architectures().items():
        maintainers = declarations(spec.module).get("__maintainers__")
        assert maintainers, name
        assert [_maintainer_problem(m) for m in maintainers] == [None] * len(
            maintainers
        ), name


def test_plugin_short_names(monkeypatch):
    """``arch check foo`` finds the plug-in experimental.foo; a short name that
    two plug-ins share is refused with both named; in-tree names stay exact."""
    from atomtrain.architectures.check import (
        check_architecture,
        find_by_name_or_short_name,
    )
    from atomtrain.errors import UserError

    plugins = [
        ArchitectureSpec("experimental.foo", "foo_a", "experimental", "plug-in a"),
        ArchitectureSpec("experimental.bar", "bar_b", "experimental", "plug-in b"),
        ArchitectureSpec("deprecated.bar", "bar_c", "deprecated", "plug-in c"),
    ]
    monkeypatch.setattr(registry, "_plugins", lambda: plugins)
    assert find_by_name_or_short_name("foo") is plugins[0]
    assert find_by_name_or_short_name("experimental.bar") is plugins[1]
    assert find_by_name_or_short_name("soap_bpnn").name == "soap_bpnn"
    with pytest.raises(UserError, match="ambiguous") as error:
        check_architecture("bar")
    assert "experimental.bar (plug-in b)" in str(error.value)
    assert "deprecated.bar (plug-in c)" in str(error.value)
    with pytest.raises(UserError, match="unknown architecture 'mace'"):
        find_by_name_or_short_name("mace")  # in-tree experimental: full name only


def test_unscriptable_model_fails_torchscript_only(plugin):
    name, folder = plugin("no_script")
    edit(
        folder,
        "model.py",
        "        r = torch.sqrt((vectors**2).sum(dim=1))\n",
        "        r = torch.sqrt((vectors**2).sum(dim=1)) * (lambda: 1.0)()\n",
    )
    report = check(name)
    assert failed(report) == ["torchscript"]
    assert "TorchScript-compatible" in report["torchscript"].fix


def test_missing_default_fails_defaults_only(plugin):
    name, folder = plugin("no_default")
    edit(
        folder,
        "documentation.py",
        "num_radial: PositiveInt = 8\n",
        "num_radial: PositiveInt\n",
    )
    # the check's training is given the value, so only 'defaults' fails
    report = check(name, model_hypers={"num_radial": 8})
    assert failed(report) == ["defaults"]
    assert "no default for num_radial" in report["defaults"].detail


@pytest.mark.skipif(not HAS_RUFF, reason="ruff is not installed")
def test_lint_error_fails_lint_only(plugin):
    name, folder = plugin("bad_lint")
    edit(folder, "trainer.py", "from atomtrain", "import os\nfrom atomtrain")
    report = check(name)
    assert failed(report) == ["lint"]
    assert "F401" in report["lint"].detail
    assert "trainer.py" in report["lint"].detail
    assert "ruff check --fix" in report["lint"].fix


def test_plain_hypers_claiming_stable_fail_typed_hypers_only(plugin):
    from atomtrain.architectures.check import STABLE
    from atomtrain.architectures.hypers import defaults_of
    from atomtrain.training.hypers import TrainingHypers

    name, folder = plugin("plain_stable", stage="stable")
    edit(folder, "__init__.py", '__stage__ = "experimental"', '__stage__ = "stable"')
    model = defaults_of(
        __import__("atomtrain_plain_stable.documentation").documentation.ModelHypers
    )
    trainer = defaults_of(TrainingHypers)
    plain = "\n".join(
        ['"""', "Plain-Stable", "============", "", "Plain hypers.", '"""', ""]
        + ["", "class ModelHypers:"]
        + [f"    {k} = {v!r}" for k, v in model.items()]
        + ["", "", "class TrainerHypers:"]
        + [f"    {k} = {v!r}" for k, v in trainer.items()]
    )
    del sys.modules["atomtrain_plain_stable.documentation"]
    with open(os.path.join(folder, "documentation.py"), "w") as file:
        file.write(plain + "\n")
    reformat(folder, "atomtrain_plain_stable")
    # a stored checkpoint, so that the regression criterion holds
    from atomtrain.architectures.registry import import_architecture
    from atomtrain.data.info import DatasetInfo, TargetInfo

    architecture = import_architecture(name)
    info = DatasetInfo([1, 6, 8], {"energy": TargetInfo("energy")})
    stored = os.path.join(folder, "tests", "checkpoints")
    os.makedirs(stored)
    torch.manual_seed(0)
    architecture.__trainer__(trainer).save_checkpoint(
        architecture.__model__(model, info), os.path.join(stored, "model-v1.ckpt")
    )
    report = check(name)
    assert report.stage == "stable"
    assert [r.criterion for r in report.results] == STABLE
    assert failed(report) == ["typed-hypers"]
    detail = report["typed-hypers"].detail
    assert "ModelHypers is not a TypedDict" in detail
    assert "TrainerHypers is not a TypedDict" in detail


def test_stable_without_checkpoint_or_title_fails(plugin):
    name, folder = plugin("bare_stable", stage="stable")
    edit(folder, "documentation.py", "Bare-Stable\n===========\n", "Bare stable.\n")
    report = check(name, training_hypers={"num_epochs": 1})
    assert "regression" in failed(report)
    assert "no stored checkpoint" in report["regression"].detail
    assert "typed-hypers" in failed(report)
    assert "title underlined by '='" in report["typed-hypers"].detail
    assert report["pypi"].passed and report["outputs"].passed


def test_direct_url_requirement_fails_pypi(monkeypatch, plugin):
    from atomtrain.architectures import check as check_module

    name, _ = plugin("url_dep", stage="stable")
    monkeypatch.setattr(
        "atomtrain.architectures.stages.requirements",
        lambda spec: ["torch", "mylib @ git+https://example.org/mylib.git"],
    )
    spec = registry.find_architecture(name)
    context = check_module._Context(spec, {}, {}, ".")
    with pytest.raises(check_module._Fail, match="direct URL requirement"):
        check_module._pypi(context)


def test_unknown_architecture_is_a_user_error():
    from atomtrain.architectures.check import check_architecture
    from atomtrain.errors import UserError

    with pytest.raises(UserError, match="unknown architecture 'nope'"):
        check_architecture("nope")
