"""``atomtrain arch check NAME``: the criteria of an architecture's life-cycle stage.

Every criterion of the architecture's stage (DESIGN.md §3) is run and reported
on one line of a report card, PASS or FAIL; a failure says what failed and how
to fix it. One tiny training run on a bundled ethanol file (20 structures) is
shared by the criteria that need a trained model.
"""

from __future__ import annotations

import contextlib
import copy
import csv
import glob
import importlib.util
import inspect
import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
import traceback
import typing
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional

from atomtrain.errors import UserError


CHECK_DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "check_data")
N_TRAIN = 16  # the first structures of check_data/ethanol.xyz; the rest validate
# the tiny training run of the check; keys the TrainerHypers lacks are left out
CHECK_TRAINING = {
    "num_epochs": 12,
    "batch_size": 4,
    "learning_rate": 5e-3,
    "warmup_epochs": 1.0,
    "checkpoint_interval": 1000,
    "log_interval": 1,
    "early_stopping_patience": 0,
    "ema_decay": 0.0,
}
EXPERIMENTAL = ["fits", "torchscript", "defaults", "lint", "maintainers", "deps"]
STABLE = EXPERIMENTAL + ["typed-hypers", "regression", "pypi", "outputs"]
STAGE_CRITERIA = {
    "experimental": EXPERIMENTAL,
    "deprecated": EXPERIMENTAL,
    "stable": STABLE,
}
TITLES = {
    "fits": "fits a quantity (tiny training beats the composition baseline)",
    "torchscript": "exports with TorchScript and the exported model runs",
    "defaults": "default hypers exist and build a model",
    "lint": "lint (ruff check + ruff format --check)",
    "maintainers": "__maintainers__ names a contact",
    "deps": "every dependency is pip-installable (and installed)",
    "typed-hypers": "typed, documented hypers and a titled documentation page",
    "regression": "regression test against a stored checkpoint",
    "pypi": "dependencies on PyPI (no direct URLs)",
    "outputs": "standard outputs (train.csv, trainer checkpoint)",
}
_CONTACT = re.compile(r"^@[A-Za-z0-9][\w.-]*$|^[^@\s]+@[^@\s]+\.[^@\s]+$")
_DIRECT_URL = re.compile(r"@\s*\S+://|^\s*(git|hg|svn|bzr)\+|://")


@dataclass
class Criterion:
    """One line of the report card."""

    criterion: str  # short key, e.g. "lint"
    passed: bool
    detail: str = ""  # what was found (on failure: what failed)
    fix: str = ""  # how to fix a failure

    @property
    def title(self) -> str:
        return TITLES.get(self.criterion, self.criterion)


@dataclass
class Report:
    """The report card of ``atomtrain arch check``."""

    name: str
    stage: str
    source: str = ""
    results: List[Criterion] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return bool(self.results) and all(r.passed for r in self.results)

    def __getitem__(self, criterion: str) -> Criterion:
        for result in self.results:
            if result.criterion == criterion:
                return result
        raise KeyError(criterion)

    def render(self) -> str:
        lines = [f"atomtrain arch check {self.name}: stage {self.stage}, {self.source}"]
        width = max(len(r.criterion) for r in self.results) if self.results else 0
        for result in self.results:
            mark = "PASS" if result.passed else "FAIL"
            text = f"  {mark}  {result.criterion.ljust(width)}  {result.title}"
            if result.detail:
                text += f": {_one_line(result.detail)}"
            lines.append(text)
            if not result.passed and result.fix:
                lines.append(
                    f"        {' ' * width}  how to fix: {_one_line(result.fix)}"
                )
        failed = [r.criterion for r in self.results if not r.passed]
        total = len(self.results)
        if failed:
            lines.append(
                f"FAILED: {len(failed)} of {total} criteria of the {self.stage} stage "
                f"({', '.join(failed)})"
            )
        else:
            lines.append(f"PASSED: all {total} criteria of the {self.stage} stage")
        return "\n".join(lines)


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


class _Fail(Exception):
    """A failed criterion: what failed and how to fix it."""

    def __init__(self, detail: str, fix: str = ""):
        super().__init__(detail)
        self.detail = detail
        self.fix = fix


def _describe_error(error: BaseException) -> str:
    """``Type: message`` with the innermost frame of the architecture's code."""
    message = str(error).strip().splitlines()
    text = f"{type(error).__name__}: {message[0] if message else ''}".strip()
    frames = traceback.extract_tb(error.__traceback__)
    if frames:
        last = frames[-1]
        text += f" (at {os.path.basename(last.filename)}:{last.lineno})"
    return text


# ----------------------------------------------------------------------- context
class _Context:
    """What the criteria share: the spec, the imported modules, the data and the
    result of the tiny training run (computed once)."""

    def __init__(self, spec, model_hypers: dict, training_hypers: dict, workdir):
        self.spec = spec
        self.model_overrides = model_hypers
        self.training_overrides = training_hypers
        self.workdir = workdir
        self._cache: Dict[str, Any] = {}

    def once(self, key: str, compute: Callable[[], Any]) -> Any:
        """``compute()`` once; a failure is remembered and raised again."""
        if key not in self._cache:
            try:
                self._cache[key] = ("ok", compute())
            except _Fail as error:
                self._cache[key] = ("fail", error)
            except Exception as error:  # noqa: BLE001 - reported as a failure
                self._cache[key] = ("fail", error)
        status, value = self._cache[key]
        if status == "fail":
            raise value
        return value

    def architecture(self):
        from atomtrain.architectures.registry import import_architecture

        return self.once("architecture", lambda: import_architecture(self.spec.name))

    def documentation(self):
        from atomtrain.architectures.registry import import_documentation

        return self.once("documentation", lambda: import_documentation(self.spec.name))

    def folder(self) -> Optional[str]:
        from atomtrain.architectures.stages import package_folder

        return package_folder(self.spec.module)

    def data(self):
        return self.once("data", _read_check_data)

    def training(self) -> dict:
        return self.once("training", self._train)

    def _train(self) -> dict:
        import torch

        from atomtrain.data.info import DatasetInfo, TargetInfo

        try:
            architecture = self.architecture()
            documentation = self.documentation()
        except Exception as error:
            raise _Fail(
                f"the architecture does not import: {_describe_error(error)}",
                f"fix the error above (try 'python -c \"import {self.spec.module}\"').",
            ) from None
        model_class = architecture.__model__
        try:
            model_hypers = _resolve(
                documentation.ModelHypers, self.model_overrides, "model", self.spec
            )
            defaults = _lenient_defaults(documentation.TrainerHypers)
            tiny = {k: v for k, v in CHECK_TRAINING.items() if k in defaults}
            tiny.update(self.training_overrides)
            train_hypers = _resolve(
                documentation.TrainerHypers, tiny, "training", self.spec
            )
        except Exception as error:
            raise _Fail(
                f"the hypers of the check run are invalid: {_describe_error(error)}",
                "give every hyperparameter a valid default in documentation.py.",
            ) from None
        train_hypers.setdefault("loss", {})
        structures = self.data()
        train = structures[:N_TRAIN]
        val = structures[N_TRAIN:]
        info = DatasetInfo(
            [1, 6, 8], {"energy": TargetInfo("energy", gradients=["positions"])}
        )
        supported = list(getattr(model_class, "__supported_dtypes__", []))
        dtype = torch.float32 if torch.float32 in supported else supported[0]
        torch.manual_seed(0)
        try:
            model = model_class(copy.deepcopy(model_hypers), info)
            trainer = architecture.__trainer__(copy.deepcopy(train_hypers))
        except Exception as error:
            raise _Fail(
                f"building the model or trainer failed: {_describe_error(error)}",
                "make __init__(hypers, dataset_info) of the model and "
                "__init__(hypers) of the trainer work with the default hypers.",
            ) from None
        run_dir = os.path.join(self.workdir, "training")
        os.makedirs(run_dir, exist_ok=True)
        before = _errors(model, train, dtype, fit=True)
        try:
            with _quiet():
                trainer.train(
                    model, dtype, [torch.device("cpu")], [train], [val], run_dir
                )
        except Exception as error:
            raise _Fail(
                f"training failed: {_describe_error(error)}",
                "run 'atomtrain train' on a small dataset to debug the model's "
                "forward pass and the trainer.",
            ) from None
        checkpoint_path = os.path.join(run_dir, "model.ckpt")
        saved_error = None
        try:
            trainer.save_checkpoint(model, checkpoint_path)
        except Exception as error:
            saved_error = _describe_error(error)
        model.eval()
        return {
            "model": model,
            "dtype": dtype,
            "train": train,
            "val": val,
            "before": before,
            "after": _errors(model, train, dtype),
            "val_after": _errors(model, val, dtype),
            "run_dir": run_dir,
            "checkpoint": checkpoint_path,
            "checkpoint_error": saved_error,
        }


@contextlib.contextmanager
def _quiet():
    """Hide the per-epoch log lines of the check's tiny training."""
    logger = logging.getLogger("atomtrain")
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        logger.setLevel(level)


def _read_check_data():
    from atomtrain.data.dataset import read_dataset
    from atomtrain.options.expand import expand_dataset
    from atomtrain.options.schema import DatasetSection
    from atomtrain.options.validation import validate

    path = os.path.join(CHECK_DATA, "ethanol.xyz")
    targets = {"energy": {"key": "energy", "unit": "eV", "forces": {"key": "forces"}}}
    section = expand_dataset({"systems": path, "targets": targets}, "check")
    section = validate(DatasetSection, section).model_dump()
    structures, _ = read_dataset(section, {})
    return structures


def _fresh(structures):
    from atomtrain.data.structure import Structure

    return [
        Structure(
            types=s.types.clone(),
            positions=s.positions.clone(),
            cell=s.cell.clone(),
            pbc=s.pbc.clone(),
            targets={k: v.clone() for k, v in s.targets.items()},
            forces={k: v.clone() for k, v in s.forces.items()},
            stress={k: v.clone() for k, v in s.stress.items()},
            source=s.source,
        )
        for s in structures
    ]


def _errors(model, structures, dtype, fit: bool = False, call=None) -> dict:
    """Energy-per-atom and force RMSE (eV, eV/Å) of ``model`` on ``structures``;
    ``fit`` first fits the composition baseline (as the trainer does)."""
    import torch

    from atomtrain.data.systems import compute_neighbors
    from atomtrain.training.baseline_fit import fit_baselines
    from atomtrain.training.evaluate import predict

    structures = _fresh(structures)
    if fit:
        with torch.no_grad():
            fit_baselines(model, structures, model.dataset_info)
    requests = model.requested_neighbor_lists()
    compute_neighbors(structures, requests)
    if call is None:
        model = model.to(dtype)

        def call(systems, outputs):
            return model(systems, outputs, None)

    targets = {"energy": model.dataset_info.targets["energy"]}
    batch = predict(call, structures, requests, targets, dtype, torch.device("cpu"))
    n_atoms = torch.tensor([len(s) for s in structures], dtype=torch.float64)
    energies = torch.cat([s.targets["energy"] for s in structures]).reshape(-1)
    forces = torch.cat([s.forces["energy"] for s in structures])
    predicted = batch.values["energy"].detach().double().reshape(-1)
    energy_rmse = ((predicted - energies) / n_atoms).pow(2).mean().sqrt()
    force_rmse = (batch.forces["energy"].detach().double() - forces).pow(2).mean()
    return {
        "energy": float(energy_rmse),
        "forces": float(force_rmse.sqrt()),
        "forces_rms": float(forces.pow(2).mean().sqrt()),
        "finite": bool(torch.isfinite(predicted).all())
        and bool(torch.isfinite(batch.forces["energy"]).all()),
    }


def _lenient_defaults(cls) -> dict:
    """Defaults of a hypers class, leaving out typed fields without one."""
    from atomtrain.architectures.hypers import (
        _MISSING,
        defaults_of,
        is_typed,
        typed_default,
    )

    if not is_typed(cls):
        return defaults_of(cls)
    defaults = {n: typed_default(cls, n) for n in typing.get_type_hints(cls)}
    return copy.deepcopy({n: v for n, v in defaults.items() if v is not _MISSING})


def _resolve(cls, user: dict, where: str, spec) -> dict:
    """``resolve_hypers`` that tolerates missing defaults given by ``user`` (so
    that a missing default fails only the 'defaults' criterion)."""
    from atomtrain.architectures.hypers import (
        _forbid_extra,
        _plain,
        deep_merge,
        is_typed,
    )
    from atomtrain.options.validation import validate

    merged = deep_merge(_lenient_defaults(cls), user or {})
    if not is_typed(cls):
        return merged
    _forbid_extra(cls)
    validated = validate(
        cls, merged, prefix=f"architecture.{where}", context=f"'{spec.name}' hyper"
    )
    return _plain(validated)


# ---------------------------------------------------------------------- criteria
def _fits(ctx: _Context) -> str:
    result = ctx.training()
    before, after, val = result["before"], result["after"], result["val_after"]
    if not after["finite"] or not val["finite"]:
        raise _Fail(
            "the trained model predicts NaN or infinite values.",
            "check the model's forward pass for divisions by zero or log of zero.",
        )
    losses = _csv_losses(os.path.join(result["run_dir"], "train.csv"))
    if len(losses) >= 2:
        lowered = losses[-1] < losses[0]
        how = f"train loss {losses[0]:.4g} -> {losses[-1]:.4g}"
    else:
        first, last = before["forces"], after["forces"]
        lowered = last < first
        how = f"train force RMSE {first:.4g} -> {last:.4g} eV/Å"
    if not lowered:
        raise _Fail(
            f"the tiny training did not lower the loss ({how}).",
            "check that the model's outputs depend on its parameters (gradients "
            "reach every layer) and that the learning rate is reasonable.",
        )
    rmse, baseline = val["forces"], val["forces_rms"]
    if not rmse < baseline:
        raise _Fail(
            f"validation force RMSE {rmse * 1000:.1f} meV/Å does not beat the "
            f"composition baseline ({baseline * 1000:.1f} meV/Å, the RMS of the "
            f"reference forces); {how}.",
            "make forces depend on the atomic environments (a smooth descriptor "
            "of neighbour positions) and check the default hypers.",
        )
    return (
        f"{how}; validation force RMSE {rmse * 1000:.0f} meV/Å < baseline "
        f"{baseline * 1000:.0f} meV/Å"
    )


def _csv_losses(path: str) -> List[float]:
    if not os.path.isfile(path):
        return []
    with open(path, newline="") as file:
        rows = list(csv.DictReader(file))
    try:
        return [float(row["train loss"]) for row in rows if row.get("train loss")]
    except ValueError:
        return []


def _torchscript(ctx: _Context) -> str:
    import torch
    from metatomic.torch import load_atomistic_model

    from atomtrain.cli.eval import exported_call
    from atomtrain.export import save_exported

    try:
        model = ctx.training()["model"]
    except Exception:
        model = _default_model(ctx)
    path = os.path.join(ctx.workdir, "exported", "model.pt")
    try:
        exported = model.export()
    except Exception as error:
        raise _Fail(
            f"model.export() failed: {_describe_error(error)}",
            "the model must be TorchScript-compatible: type-annotate forward's "
            "arguments, avoid Python-only constructs (lambdas, **kwargs, "
            "non-tensor globals, numpy) in forward and the modules it calls; "
            "see https://pytorch.org/docs/stable/jit_language_reference.html",
        ) from None
    try:
        save_exported(exported, path)
        loaded = load_atomistic_model(path)
    except Exception as error:
        raise _Fail(
            f"saving or loading the exported model failed: {_describe_error(error)}",
            "check the model's metadata and capabilities (supported outputs, "
            "atomic types, neighbour lists).",
        ) from None
    dtype = next(model.parameters()).dtype
    structures = ctx.data()[:2]
    try:
        errors = _errors(model, structures, dtype, call=exported_call(loaded))
    except Exception as error:
        raise _Fail(
            f"the exported model failed to run: {_describe_error(error)}",
            "compare the exported model with the in-memory one, e.g. with the "
            "conformance suite's test_exported_matches_in_memory.",
        ) from None
    if not errors["finite"]:
        raise _Fail(
            "the exported model predicts NaN or infinite values.",
            "check the model's forward pass.",
        )
    size = os.path.getsize(path) / 1024
    del torch
    return f"exported to model.pt ({size:.0f} kB), loaded and evaluated"


def _default_model(ctx: _Context):
    from atomtrain.architectures.hypers import defaults_of
    from atomtrain.data.info import DatasetInfo, TargetInfo

    architecture = ctx.architecture()
    hypers = defaults_of(ctx.documentation().ModelHypers)
    info = DatasetInfo(
        [1, 6, 8], {"energy": TargetInfo("energy", gradients=["positions"])}
    )
    return architecture.__model__(hypers, info)


def _defaults(ctx: _Context) -> str:
    from atomtrain.architectures.hypers import defaults_of

    try:
        documentation = ctx.documentation()
    except Exception as error:
        raise _Fail(
            f"documentation.py does not import: {_describe_error(error)}",
            "documentation.py must import without the model's extra dependencies.",
        ) from None
    counts = []
    for kind in ("ModelHypers", "TrainerHypers"):
        cls = getattr(documentation, kind, None)
        if cls is None:
            raise _Fail(
                f"documentation.py defines no {kind}.",
                f"add a class {kind} (a TypedDict with defaults) to documentation.py.",
            )
        try:
            counts.append(len(defaults_of(cls)))
        except UserError as error:
            raise _Fail(
                str(error),
                "write a default after each annotation in documentation.py, e.g. "
                "'cutoff: float = 5.0'.",
            ) from None
    try:
        model = _default_model(ctx)
        ctx.architecture().__trainer__(defaults_of(documentation.TrainerHypers))
    except Exception as error:
        raise _Fail(
            f"the default hypers do not build a model and trainer: "
            f"{_describe_error(error)}",
            "make the defaults in documentation.py complete and consistent with "
            "what model.py and trainer.py read.",
        ) from None
    n_parameters = sum(p.numel() for p in model.parameters())
    return (
        f"{counts[0]} model and {counts[1]} trainer hypers; default model has "
        f"{n_parameters:,} parameters"
    )


def _atomtrain_pyproject() -> Optional[str]:
    """atomtrain's own pyproject.toml (a source checkout or editable install)."""
    import atomtrain

    root = os.path.dirname(os.path.dirname(os.path.dirname(atomtrain.__file__)))
    path = os.path.join(root, "pyproject.toml")
    if os.path.isfile(path):
        with open(path) as file:
            text = file.read()
        if 'name = "atomtrain"' in text and "[tool.ruff" in text:
            return path
    return None


# atomtrain's ruff settings, used when its pyproject.toml is not at hand
_RUFF_SETTINGS = [
    "line-length = 88",
    "target-version = 'py310'",
    "lint.select = ['E', 'F', 'W', 'I', 'B', 'UP', 'TID']",
    "lint.ignore = ['UP007', 'UP006', 'UP035', 'UP045', 'UP037', 'B905', 'E741']",
    "lint.isort.lines-after-imports = 2",
    "lint.flake8-tidy-imports.ban-relative-imports = 'all'",
]


def ruff_arguments(folder: str, module: str) -> List[str]:
    """``--config`` options of the lint criterion for an architecture folder."""
    pyproject = _atomtrain_pyproject()
    if pyproject is not None:
        repo = os.path.dirname(pyproject)
        inside = os.path.commonpath([os.path.abspath(folder), repo]) == repo
        if inside:
            return []  # ruff finds the project's settings itself
        arguments = ["--config", pyproject]
    else:
        arguments = [a for s in _RUFF_SETTINGS for a in ("--config", s)]
    first_party = sorted({"atomtrain", module.split(".")[0]})
    arguments += ["--config", f"lint.isort.known-first-party = {first_party!r}"]
    return arguments


def _lint(ctx: _Context) -> str:
    folder = ctx.folder()
    if folder is None:
        raise _Fail(f"cannot find the package {ctx.spec.module}.", "")
    if importlib.util.find_spec("ruff") is None:
        raise _Fail(
            "ruff is not installed, so lint could not be checked.",
            "pip install ruff (or pip install 'atomtrain[test]') and check again.",
        )
    config = ruff_arguments(folder, ctx.spec.module)
    ruff = [sys.executable, "-m", "ruff"]
    problems = []
    check = subprocess.run(
        [*ruff, "check", "--no-cache", "--output-format", "concise", *config, folder],
        capture_output=True,
        text=True,
    )
    if check.returncode != 0:
        lines = [
            line.replace(folder + os.sep, "")
            for line in check.stdout.splitlines()
            if line.strip() and re.match(r".+:\d+:\d+: ", line)
        ]
        problems.append(
            f"ruff check: {'; '.join(lines[:5]) or check.stderr.strip()}"
            + (f" (and {len(lines) - 5} more)" if len(lines) > 5 else "")
        )
    formatting = subprocess.run(
        [*ruff, "format", "--check", "--no-cache", *config, folder],
        capture_output=True,
        text=True,
    )
    if formatting.returncode != 0:
        files = [
            os.path.relpath(line.split(" ", 2)[-1], folder)
            for line in formatting.stdout.splitlines()
            if line.startswith("Would reformat: ")
        ]
        problems.append(
            "ruff format: would reformat " + (", ".join(files) or formatting.stderr)
        )
    if problems:
        shown = " ".join(config)
        raise _Fail(
            "; ".join(problems),
            f"run 'ruff check --fix {shown} {folder}' and 'ruff format {shown} "
            f"{folder}', then fix what remains by hand.".replace("  ", " "),
        )
    return f"ruff check and ruff format --check are clean on {folder}"


def _maintainers(ctx: _Context) -> str:
    from atomtrain.architectures.stages import declarations

    maintainers = declarations(ctx.spec.module).get("__maintainers__")
    fix = (
        "set __maintainers__ = [('Full Name', 'name@example.org')] in the "
        "package's __init__.py (a literal list; the contact is an email or an "
        "@handle)."
    )
    if not maintainers or not isinstance(maintainers, (list, tuple)):
        raise _Fail("__maintainers__ is missing or empty.", fix)
    bad = []
    for entry in maintainers:
        parts = list(entry) if isinstance(entry, (list, tuple)) else str(entry).split()
        if not any(_CONTACT.match(str(p).strip("<>()")) for p in parts[1:] or parts):
            bad.append(repr(entry))
    if bad:
        raise _Fail(f"no email or @handle in {', '.join(bad)}.", fix)
    return ", ".join(
        " ".join(map(str, m)) if isinstance(m, (list, tuple)) else str(m)
        for m in maintainers
    )


def _deps(ctx: _Context) -> str:
    from atomtrain.architectures.stages import (
        install_hint,
        missing_requirements,
        requirements,
    )

    missing = missing_requirements(ctx.spec)
    if missing:
        raise _Fail(
            f"not installed: {', '.join(missing)}.",
            f"install them ({install_hint(ctx.spec)}); if that fails, the "
            "requirement names a package that pip cannot install: fix its name "
            "or version.",
        )
    declared = requirements(ctx.spec)
    return (
        f"{len(declared)} requirement(s) installed: {', '.join(declared)}"
        if declared
        else "no requirements beyond atomtrain"
    )


def _typed_hypers(ctx: _Context) -> str:
    from atomtrain.architectures.docs import field_docstrings
    from atomtrain.architectures.hypers import is_typed

    documentation = ctx.documentation()
    problems = []
    n_fields = 0
    for kind in ("ModelHypers", "TrainerHypers"):
        cls = getattr(documentation, kind, None)
        if cls is None or not is_typed(cls):
            problems.append(f"{kind} is not a TypedDict")
            continue
        undocumented, count = _undocumented(cls, kind, field_docstrings)
        n_fields += count
        if undocumented:
            problems.append(f"no docstring for {', '.join(undocumented)}")
    lines = inspect.cleandoc(documentation.__doc__ or "").splitlines()
    if not (len(lines) >= 2 and lines[0].strip() and set(lines[1].strip()) == {"="}):
        problems.append(
            "the docstring of documentation.py does not start with a title "
            "underlined by '='"
        )
    if problems:
        raise _Fail(
            "; ".join(problems) + ".",
            "make ModelHypers and TrainerHypers typing_extensions.TypedDict classes "
            "whose fields each have a type, a default and a docstring on the next "
            "line; start documentation.py with 'Title\\n=====' (see "
            "soap_bpnn/documentation.py).",
        )
    return f"{n_fields} typed fields, all documented; titled documentation page"


def _undocumented(cls, prefix: str, field_docstrings) -> tuple[List[str], int]:
    from atomtrain.architectures.hypers import is_typed

    docs = field_docstrings(cls)
    missing, count = [], 0
    for name, annotation in typing.get_type_hints(cls).items():
        count += 1
        if not docs.get(name, "").strip():
            missing.append(f"{prefix}.{name}")
        if is_typed(annotation):
            more, n = _undocumented(annotation, f"{prefix}.{name}", field_docstrings)
            missing += more
            count += n
    return missing, count


def _regression(ctx: _Context) -> str:
    from atomtrain.training.checkpoints import read_checkpoint

    folder = ctx.folder()
    stored = os.path.join(folder or "", "tests", "checkpoints")
    paths = sorted(glob.glob(os.path.join(stored, "*.ckpt")))
    fix = (
        f"store a small checkpoint in {stored}/ with 'python -m "
        f"atomtrain.testing.make_reference {ctx.spec.name}', ship it as package "
        "data, and run the conformance suite (it compares the predictions)."
    )
    if not paths:
        raise _Fail(f"no stored checkpoint (*.ckpt) in {stored}.", fix)
    architecture = ctx.architecture()
    compared = 0
    for path in paths:
        label = os.path.basename(path)
        try:
            checkpoint = read_checkpoint(path)
            model = architecture.__model__.load_checkpoint(checkpoint, "export")
            model = model.eval()
            dtype = next(model.parameters()).dtype
            errors = _errors(model, ctx.data()[:2], dtype)
        except Exception as error:
            raise _Fail(
                f"{label} does not load and predict: {_describe_error(error)}",
                "write an upgrade_from_vN step for the changed checkpoint format, "
                "or regenerate the stored checkpoint if the change is intended.",
            ) from None
        if not errors["finite"]:
            raise _Fail(f"{label} predicts NaN or infinite values.", fix)
        reference = os.path.splitext(path)[0] + ".json"
        if os.path.isfile(reference):
            compared += _compare_reference(model, reference, label)
    compared_text = f", {compared} compared with stored predictions" if compared else ""
    return f"{len(paths)} stored checkpoint(s) load and predict{compared_text}"


def _compare_reference(model, reference: str, label: str) -> int:
    import json

    try:
        from atomtrain.testing.fixtures import (
            compare_references,
            reference_predictions,
        )
    except ImportError:
        return 0
    with open(reference) as file:
        expected = json.load(file)
    try:
        compare_references(reference_predictions(model), expected, label)
    except AssertionError as error:
        raise _Fail(
            f"{label}: predictions differ from {os.path.basename(reference)} "
            f"({_one_line(str(error))[:200]})",
            "find the change of the model that altered its predictions; if it is "
            "intended, regenerate the reference with atomtrain.testing."
            "make_reference.",
        ) from None
    return 1


def _pypi(ctx: _Context) -> str:
    from atomtrain.architectures.stages import requirements

    direct = [r for r in requirements(ctx.spec) if _DIRECT_URL.search(r)]
    if direct:
        raise _Fail(
            f"direct URL requirement(s): {', '.join(direct)}.",
            "publish these packages on PyPI and require them by name and version "
            "(e.g. 'package>=1.2'); direct URLs cannot be installed from PyPI.",
        )
    return "every requirement is a PyPI name"


def _outputs(ctx: _Context) -> str:
    from atomtrain.training.checkpoints import read_checkpoint

    result = ctx.training()
    fix = (
        "train with atomtrain's StandardTrainer (subclass it) or write "
        "train.csv with atomtrain.training.logs.CsvLog into checkpoint_dir and "
        "save checkpoints with the shared format."
    )
    csv_path = os.path.join(result["run_dir"], "train.csv")
    if not os.path.isfile(csv_path):
        raise _Fail("the trainer wrote no train.csv into checkpoint_dir.", fix)
    if result["checkpoint_error"]:
        raise _Fail(
            f"trainer.save_checkpoint failed: {result['checkpoint_error']}", fix
        )
    try:
        checkpoint = read_checkpoint(result["checkpoint"])
    except UserError as error:
        raise _Fail(f"the trainer's checkpoint does not load: {error}", fix) from None
    if checkpoint.get("architecture_name") != ctx.spec.name:
        raise _Fail(
            f"the checkpoint names architecture "
            f"'{checkpoint.get('architecture_name')}', not '{ctx.spec.name}'.",
            fix,
        )
    return "train.csv written; the trainer's checkpoint loads with read_checkpoint"


CRITERIA: Dict[str, Callable[[_Context], str]] = {
    "fits": _fits,
    "torchscript": _torchscript,
    "defaults": _defaults,
    "lint": _lint,
    "maintainers": _maintainers,
    "deps": _deps,
    "typed-hypers": _typed_hypers,
    "regression": _regression,
    "pypi": _pypi,
    "outputs": _outputs,
}


def check_architecture(
    name: str,
    model_hypers: Optional[dict] = None,
    training_hypers: Optional[dict] = None,
) -> Report:
    """Run every criterion of the stage of architecture ``name``.

    ``model_hypers`` and ``training_hypers`` are merged over the defaults (and the
    tiny :data:`CHECK_TRAINING` run) for the training done by the check.
    """
    from atomtrain.architectures.registry import find_architecture

    spec = find_architecture(name)
    report = Report(name, spec.stage, f"{spec.source} ({spec.module})")
    workdir = tempfile.mkdtemp(prefix="atomtrain-check-")
    ctx = _Context(spec, model_hypers or {}, training_hypers or {}, workdir)
    try:
        for criterion in STAGE_CRITERIA[spec.stage]:
            try:
                detail = CRITERIA[criterion](ctx)
                report.results.append(Criterion(criterion, True, detail))
            except _Fail as failure:
                report.results.append(
                    Criterion(criterion, False, failure.detail, failure.fix)
                )
            except Exception as error:  # noqa: BLE001 - any error fails the line
                report.results.append(
                    Criterion(
                        criterion,
                        False,
                        _describe_error(error),
                        "fix the error above; run the conformance suite "
                        "(atomtrain.testing) for a detailed diagnosis.",
                    )
                )
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return report


__all__ = ["Criterion", "Report", "check_architecture", "CRITERIA", "CHECK_TRAINING"]
