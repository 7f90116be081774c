"""``atomtrain arch check``: the criteria of an architecture's life-cycle stage,
run one by one and reported as a report card with how to fix each failure."""

from __future__ import annotations

import contextlib
import glob
import inspect
import io
import json
import logging
import os
import re
import subprocess
import sys
import tempfile
import typing
from dataclasses import dataclass, field
from typing import Callable

import typing_extensions
import yaml

from atomtrain.architectures.docs import field_docstrings
from atomtrain.architectures.hypers import defaults_of, is_typed
from atomtrain.architectures.registry import find_architecture, import_documentation
from atomtrain.architectures.stages import (
    declarations,
    missing_requirements,
    package_folder,
    requirements,
)
from atomtrain.errors import UserError


CONTACT = re.compile(r"(^@\w[\w.-]*$)|(^[^@\s]+@[^@\s]+\.\w+$)")


@dataclass
class Criterion:
    name: str
    passed: bool
    detail: str = ""


@dataclass
class Report:
    architecture: str
    stage: str
    criteria: list[Criterion] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.criteria)

    def render(self) -> str:
        lines = [f"arch check {self.architecture} (stage: {self.stage})"]
        for c in self.criteria:
            mark = "PASS" if c.passed else "FAIL"
            lines.append(f"  [{mark}] {c.name}" + (f": {c.detail}" if c.detail else ""))
        verdict = "all criteria hold" if self.passed else "some criteria fail"
        lines.append(f"{verdict} for stage '{self.stage}'")
        return "\n".join(lines)


class TrainingRun:
    """One tiny training through the standard CLI path, shared by the criteria."""

    def __init__(self, name: str):
        self.name = name
        self.folder = tempfile.mkdtemp(prefix="atomtrain-check-")
        self.run_dir = os.path.join(self.folder, "run")
        self.error: str | None = None
        self.log = ""
        self._run()

    def _run(self) -> None:
        from atomtrain.cli import main
        from atomtrain.testing.fixtures import DATA

        options = {
            "architecture": {
                "name": self.name,
                "training": {"num_epochs": 5, "batch_size": 2},
            },
            "training_set": {
                "systems": os.path.join(DATA, "ethanol.xyz"),
                "targets": {"energy": {"unit": "eV", "forces": True}},
            },
            "validation_set": 0.2,
            "seed": 0,
        }
        path = os.path.join(self.folder, "options.yaml")
        with open(path, "w") as file:
            yaml.safe_dump(options, file)
        stderr = io.StringIO()
        cwd = os.getcwd()
        # the report card is the output: the run's log goes to its train.log only
        log = logging.getLogger("atomtrain")
        propagate, log.propagate = log.propagate, False
        try:
            os.chdir(self.folder)
            with contextlib.redirect_stderr(stderr):
                code = main(["train", "options.yaml", "--output-dir", "run"])
        except Exception as error:  # a crash of the architecture is a finding
            code, self.error = 1, f"{type(error).__name__}: {error}"
        finally:
            os.chdir(cwd)
            log.propagate = propagate
        if code != 0 and self.error is None:
            self.error = stderr.getvalue().strip() or f"exit code {code}"

    def rows(self) -> list[dict]:
        import csv

        with open(os.path.join(self.run_dir, "train.csv")) as file:
            return list(csv.DictReader(file))


def _fits(run: TrainingRun, spec) -> tuple[bool, str]:
    if run.error:
        return False, f"training failed: {run.error}"
    rows = run.rows()
    first, last = float(rows[0]["train loss"]), float(rows[-1]["train loss"])
    rmse = float(rows[-1]["val forces RMSE (meV/Å)"])
    baseline = _baseline_force_rmse()
    detail = (
        f"train loss {first:.3g} -> {last:.3g}; validation force RMSE "
        f"{rmse:.0f} meV/Å vs {baseline:.0f} for the composition baseline"
    )
    ok = last < first and rmse < baseline
    return ok, detail + ("" if ok else "; the model must learn: check its forward")


def _baseline_force_rmse() -> float:
    from atomtrain.testing.fixtures import read_bundled

    forces = [s.forces["energy"] for s in read_bundled("ethanol")]
    import torch

    return float(torch.cat(forces).pow(2).mean().sqrt()) * 1000.0


def _exports(run: TrainingRun, spec) -> tuple[bool, str]:
    if run.error:
        return False, "no trained model to export (see the training criterion)"
    import torch
    from metatomic.torch import load_atomistic_model

    from atomtrain.cli.eval import exported_call, model_info
    from atomtrain.data.systems import compute_neighbors
    from atomtrain.testing.fixtures import read_bundled
    from atomtrain.training.evaluate import predict

    try:
        model = load_atomistic_model(os.path.join(run.run_dir, "model.pt"))
        structures = read_bundled("ethanol")[:2]
        compute_neighbors(structures, model.requested_neighbor_lists())
        info = model_info(model)
        dtype = getattr(torch, model.capabilities().dtype)
        result = predict(
            exported_call(model),
            structures,
            model.requested_neighbor_lists(),
            info.targets,
            dtype,
            torch.device("cpu"),
        )
        assert torch.isfinite(result.values["energy"]).all()
    except Exception as error:
        return False, (
            f"the exported model does not run ({type(error).__name__}: "
            f"{str(error).splitlines()[0]}); keep forward TorchScript-"
            "compatible (typed, no Python-only calls)"
        )
    return True, "TorchScript export saved, reloaded and evaluated"


def _defaults(name: str, spec) -> tuple[bool, str]:
    try:
        documentation = import_documentation(name)
        model_hypers = defaults_of(documentation.ModelHypers)
        defaults_of(documentation.TrainerHypers)
        from atomtrain.architectures.registry import import_architecture
        from atomtrain.testing.fixtures import dataset_info

        import_architecture(name).__model__(model_hypers, dataset_info())
    except Exception as error:
        return False, (
            f"{type(error).__name__}: {error}; give every field of "
            "ModelHypers and TrainerHypers a default that builds a model"
        )
    return True, "defaults build a model"


def _lint(name: str, spec) -> tuple[bool, str]:
    folder = package_folder(spec.module)
    config = _project_config()
    for command in (["check"], ["format", "--check"]):
        args = [sys.executable, "-m", "ruff", *command, folder]
        if config and not _has_own_config(folder):
            args[4:4] = ["--config", config]
        try:
            result = subprocess.run(args, capture_output=True, text=True)
        except OSError as error:
            return False, f"cannot run ruff ({error}); pip install ruff"
        if "No module named ruff" in result.stderr:
            return False, "ruff is not installed: pip install ruff"
        if result.returncode != 0:
            first = (result.stdout or result.stderr).strip().splitlines()[:3]
            return False, (
                f"ruff {' '.join(command)} fails: {' | '.join(first)}; "
                f"run 'ruff check --fix {folder}' and 'ruff format "
                f"{folder}'"
            )
    return True, "ruff check and ruff format --check pass"


def _project_config() -> str | None:
    here = os.path.dirname(os.path.abspath(__file__))
    for parent in (here, *[os.path.join(here, *[".."] * n) for n in range(1, 5)]):
        path = os.path.abspath(os.path.join(parent, "pyproject.toml"))
        if os.path.exists(path):
            return path
    return None


def _has_own_config(folder: str) -> bool:
    parent = os.path.abspath(folder)
    for _ in range(4):
        if os.path.exists(os.path.join(parent, "pyproject.toml")):
            return True
        parent = os.path.dirname(parent)
    return False


def _maintainers(name: str, spec) -> tuple[bool, str]:
    maintainers = declarations(spec.module).get("__maintainers__") or []
    if not maintainers:
        return False, (
            "no __maintainers__ in __init__.py: add e.g. "
            "__maintainers__ = [('Name', 'name@example.org')]"
        )
    for entry in maintainers:
        contact = (
            entry[1] if isinstance(entry, (list, tuple)) and len(entry) > 1 else ""
        )
        if not CONTACT.match(str(contact)):
            return False, (
                f"maintainer {entry!r} has no contact: give (name, email or @handle)"
            )
    return True, f"{len(maintainers)} maintainer(s) with a contact"


def _dependencies_installed(name: str, spec) -> tuple[bool, str]:
    missing = missing_requirements(spec)
    if missing:
        return False, f"not installed: {', '.join(missing)}"
    return True, f"{len(requirements(spec))} declared requirement(s) installed"


def _typed_hypers(name: str, spec) -> tuple[bool, str]:
    documentation = import_documentation(name)
    lines = inspect.cleandoc(documentation.__doc__ or "").splitlines()
    if len(lines) < 2 or not lines[1] or set(lines[1]) != {"="}:
        return False, (
            "documentation.py needs a module docstring starting with the "
            "architecture's name underlined with '='"
        )
    for cls_name in ("ModelHypers", "TrainerHypers"):
        missing = _undocumented(getattr(documentation, cls_name), cls_name)
        if missing is not None:
            return False, missing
    return True, "TypedDict hypers, a docstring for every field, titled docstring"


def _undocumented(cls, where: str) -> str | None:
    if not is_typed(cls):
        return (
            f"{where} is a plain class: stable architectures need a "
            "typing_extensions.TypedDict with a type and docstring per field"
        )
    docs = field_docstrings(cls)
    for field_name, annotation in typing.get_type_hints(cls).items():
        if not docs.get(field_name):
            return f"{where}.{field_name} has no docstring (a string after the field)"
        if typing_extensions.is_typeddict(annotation):
            nested = _undocumented(annotation, f"{where}.{field_name}")
            if nested:
                return nested
    return None


def _regression_checkpoint(name: str, spec) -> tuple[bool, str]:
    from atomtrain.architectures.registry import import_architecture
    from atomtrain.testing.fixtures import (
        checkpoints_folder,
        compare_references,
        reference_path,
        reference_predictions,
    )
    from atomtrain.training.checkpoints import read_checkpoint

    folder = checkpoints_folder(spec.module)
    paths = sorted(glob.glob(os.path.join(folder or "", "*.ckpt")))
    if not paths:
        return False, (
            "no stored checkpoint in tests/checkpoints/: create one with "
            f"'python -m atomtrain.testing.make_reference {name}'"
        )
    model_class = import_architecture(name).__model__
    for path in paths:
        try:
            model = model_class.load_checkpoint(read_checkpoint(path), "export")
            with open(reference_path(path)) as file:
                compare_references(reference_predictions(model), json.load(file), path)
        except (Exception, AssertionError) as error:
            return False, f"{os.path.basename(path)}: {str(error).splitlines()[0]}"
    return True, f"{len(paths)} stored checkpoint(s) reproduce their predictions"


def _pypi_dependencies(name: str, spec) -> tuple[bool, str]:
    direct = [r for r in requirements(spec) if "@" in r or "://" in r or "git+" in r]
    if direct:
        return False, f"direct URL requirements: {', '.join(direct)}; publish on PyPI"
    return True, "no direct-URL requirement"


def _standard_outputs(run: TrainingRun, spec) -> tuple[bool, str]:
    if run.error:
        return False, "no training run (see the training criterion)"
    from atomtrain.training.checkpoints import read_checkpoint

    expected = (
        "train.log",
        "train.csv",
        "options_restart.yaml",
        "model.ckpt",
        "model.pt",
        "restart.ckpt",
    )
    missing = [f for f in expected if not os.path.exists(os.path.join(run.run_dir, f))]
    if missing:
        return False, (
            f"missing {', '.join(missing)} in the run folder: train with "
            "the shared StandardTrainer (or call its save_checkpoint)"
        )
    try:
        read_checkpoint(os.path.join(run.run_dir, "model.ckpt"))
    except UserError as error:
        return False, str(error)
    return True, "train.log, train.csv and checkpoints in the standard places"


def check_architecture(name: str) -> Report:
    spec = find_architecture(name)
    report = Report(name, spec.stage)
    run: TrainingRun | None = None

    def training() -> TrainingRun:
        nonlocal run
        run = run or TrainingRun(name)
        return run

    checks: list[tuple[str, Callable[[], tuple[bool, str]]]] = [
        ("fits and predicts a quantity", lambda: _fits(training(), spec)),
        (
            "exports with TorchScript and the export runs",
            lambda: _exports(training(), spec),
        ),
        (
            "defaults for every hyperparameter build a model",
            lambda: _defaults(name, spec),
        ),
        ("lint (ruff) passes on the folder", lambda: _lint(name, spec)),
        ("__maintainers__ names a contact", lambda: _maintainers(name, spec)),
        (
            "dependencies are pip-installable and installed",
            lambda: _dependencies_installed(name, spec),
        ),
    ]
    if spec.stage == "stable":
        checks += [
            ("typed, documented hypers", lambda: _typed_hypers(name, spec)),
            (
                "regression test against a stored checkpoint",
                lambda: _regression_checkpoint(name, spec),
            ),
            ("dependencies on PyPI", lambda: _pypi_dependencies(name, spec)),
            (
                "standard outputs (logging, save locations)",
                lambda: _standard_outputs(training(), spec),
            ),
        ]
    for title, check in checks:
        try:
            passed, detail = check()
        except UserError as error:
            passed, detail = False, str(error)
        report.criteria.append(Criterion(title, passed, detail))
    return report
