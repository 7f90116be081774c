"""``atomtrain arch check NAME``: the criteria of an architecture's life-cycle stage.

Every criterion of the architecture's stage (DESIGN.md §3) is run and reported
on one line of a report card, PASS or FAIL; a failure says what failed and how
to fix it. One tiny training run on a bundled ethanol file (20 structures) is
shared by the criteria that need a trained model.
"""

from __future__ import annotations

import glob
import importlib.util
import inspect
import os
import re
import shutil
import subprocess
import sys
import tempfile
import typing
from typing import Callable, Dict, List, Optional

from atomtrain.architectures.check_report import (  # noqa: F401 (re-exported)
    _DIRECT_URL,
    TITLES,
    Criterion,
    Report,
    _describe_error,
    _Fail,
    _one_line,
)
from atomtrain.architectures.check_training import (  # noqa: F401 (re-exported)
    CHECK_DATA,
    CHECK_TRAINING,
    EXPERIMENTAL,
    N_TRAIN,
    STABLE,
    STAGE_CRITERIA,
    _Context,
    _defaults,
    _errors,
    _fits,
    _torchscript,
)
from atomtrain.errors import UserError


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
        "set __maintainers__ = [('Full Name', 'name@your-domain')] in the "
        "package's __init__.py: a literal list naming a person (or team) and a "
        "contact that reaches them (an email address or an @handle), not the "
        "scaffold's placeholder."
    )
    if not maintainers or not isinstance(maintainers, (list, tuple)):
        raise _Fail("__maintainers__ is missing or empty.", fix)
    problems = [_maintainer_problem(entry) for entry in maintainers]
    problems = [p for p in problems if p]
    if problems:
        raise _Fail("; ".join(problems) + ".", fix)
    return ", ".join(
        " ".join(map(str, m)) if isinstance(m, (list, tuple)) else str(m)
        for m in maintainers
    )


def _maintainer_problem(entry) -> Optional[str]:
    """What is wrong with one ``__maintainers__`` entry, or None."""
    from atomtrain.architectures.maintainers import (
        CONTACT,
        is_placeholder_name,
        placeholder_reason,
    )

    parts = list(entry) if isinstance(entry, (list, tuple)) else str(entry).split()
    contacts = [
        str(p).strip("<>()") for p in parts if CONTACT.match(str(p).strip("<>()"))
    ]
    name = " ".join(str(p) for p in parts if str(p).strip("<>()") not in contacts)
    if not contacts:
        return f"no email or @handle in {entry!r}"
    reasons = [placeholder_reason(c) for c in contacts]
    if all(reasons):
        return f"{entry!r}: {', '.join(reasons)}: a placeholder reaches nobody"
    if is_placeholder_name(name):
        return f"{entry!r}: '{name}' is a placeholder, not a maintainer's name"
    return None


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


def find_by_name_or_short_name(name: str):
    """The architecture named ``name``, or the one plug-in whose name without
    its stage prefix is ``name`` (``foo`` for ``experimental.foo``)."""
    from atomtrain.architectures.registry import all_architectures, find_architecture

    specs = all_architectures()
    if name in specs:
        return specs[name]
    matches = [
        spec
        for full, spec in specs.items()
        if spec.source.startswith("plug-in") and full.split(".", 1)[-1] == name
    ]
    if len(matches) > 1:
        listed = ", ".join(f"{m.name} ({m.source})" for m in matches)
        raise UserError(
            f"architecture name '{name}' is ambiguous: it is the short name of "
            f"the plug-ins {listed}. Give the full name."
        )
    return matches[0] if matches else find_architecture(name)


def check_architecture(
    name: str,
    model_hypers: Optional[dict] = None,
    training_hypers: Optional[dict] = None,
) -> Report:
    """Run every criterion of the stage of architecture ``name`` (a plug-in may
    be named without its stage prefix when that is unambiguous).

    ``model_hypers`` and ``training_hypers`` are merged over the defaults (and the
    tiny :data:`CHECK_TRAINING` run) for the training done by the check.
    """
    spec = find_by_name_or_short_name(name)
    report = Report(spec.name, spec.stage, f"{spec.source} ({spec.module})")
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
