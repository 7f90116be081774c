"""Life-cycle stages: what an architecture declares, and what using it means.

Declarations are read from the package's ``__init__.py`` with ``ast`` (literal
values only), so listing and checking never import model code.
"""

from __future__ import annotations

import ast
import datetime
import importlib.metadata
import importlib.util
import logging
import os
import re
from typing import Any

from atomtrain.errors import UserError


logger = logging.getLogger("atomtrain")
DEPRECATION_MONTHS = 6


def package_folder(module: str) -> str | None:
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        return None
    return list(spec.submodule_search_locations)[0]


def declarations(module: str) -> dict[str, Any]:
    """Literal ``__dunder__ = ...`` assignments of the package's ``__init__.py``."""
    folder = package_folder(module)
    if folder is None:
        return {}
    path = os.path.join(folder, "__init__.py")
    if not os.path.exists(path):
        return {}
    with open(path) as file:
        tree = ast.parse(file.read(), path)
    found: dict[str, Any] = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1:
            target = node.targets[0]
            if isinstance(target, ast.Name) and target.id.startswith("__"):
                try:
                    found[target.id] = ast.literal_eval(node.value)
                except ValueError:
                    continue
    return found


def today() -> datetime.date:
    """Today's date; ``ATOMTRAIN_TODAY=YYYY-MM-DD`` injects another (for tests)."""
    injected = os.environ.get("ATOMTRAIN_TODAY")
    return datetime.date.fromisoformat(injected) if injected else datetime.date.today()


def add_months(date: datetime.date, months: int) -> datetime.date:
    month = date.month - 1 + months
    year, month = date.year + month // 12, month % 12 + 1
    for day in (date.day, 30, 29, 28):
        try:
            return datetime.date(year, month, day)
        except ValueError:
            continue
    raise AssertionError("unreachable")


def deprecation_dates(name: str, info: Any) -> tuple[datetime.date, datetime.date, str]:
    """(since, removal, reason) of a deprecated architecture, or a clear error."""
    if not isinstance(info, dict) or "since" not in info:
        raise UserError(
            f"deprecated architecture '{name}' must declare in its __init__.py "
            "__deprecated__ = {'since': 'YYYY-MM-DD', 'reason': '...'}."
        )
    try:
        since = datetime.date.fromisoformat(str(info["since"]))
    except ValueError:
        raise UserError(
            f"deprecated architecture '{name}': __deprecated__['since'] is "
            f"'{info['since']}', which is not a date YYYY-MM-DD."
        ) from None
    return since, add_months(since, DEPRECATION_MONTHS), str(info.get("reason", ""))


def announce_stage(spec) -> None:
    """Warn about experimental and deprecated architectures; refuse removed ones."""
    if spec.stage == "experimental":
        logger.warning(
            f"warning: '{spec.name}' is an experimental architecture: its API, "
            "checkpoints and defaults may change without notice."
        )
    elif spec.stage == "deprecated":
        declared = declarations(spec.module).get("__deprecated__")
        since, removal, reason = deprecation_dates(spec.name, declared)
        reason = f" Reason: {reason}" if reason else ""
        if today() >= removal:
            raise UserError(
                f"architecture '{spec.name}' was deprecated on {since} and reached "
                f"its removal date on {removal}; it can no longer be used.{reason} "
                "Choose another architecture (see 'atomtrain arch list'), or fix it "
                "and move it back out of deprecated/."
            )
        logger.warning(
            f"warning: '{spec.name}' is deprecated since {since} and will be "
            f"removed on {removal}.{reason}"
        )


_REQUIREMENT_NAME = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)")


def requirements(spec) -> list[str]:
    """Requirement strings an architecture needs beyond the core."""
    if spec.source == "in-tree":
        extra = spec.name.split(".")[-1]
        try:
            requires = importlib.metadata.requires("atomtrain") or []
        except importlib.metadata.PackageNotFoundError:
            return []
        marker = re.compile(rf"extra\s*==\s*['\"]{re.escape(extra)}['\"]")
        return [r.split(";")[0].strip() for r in requires if marker.search(r)]
    distribution = spec.source.split(" ", 1)[1]
    try:
        requires = importlib.metadata.requires(distribution) or []
    except importlib.metadata.PackageNotFoundError:
        return []
    return [r.split(";")[0].strip() for r in requires if "extra ==" not in r]


def missing_requirements(spec) -> list[str]:
    missing = []
    for requirement in requirements(spec):
        match = _REQUIREMENT_NAME.match(requirement)
        if match is None:
            continue
        try:
            importlib.metadata.version(match.group(1))
        except importlib.metadata.PackageNotFoundError:
            missing.append(requirement)
    return missing


def install_hint(spec) -> str:
    if spec.source == "in-tree":
        return f"pip install 'atomtrain[{spec.name.split('.')[-1]}]'"
    return f"pip install {spec.source.split(' ', 1)[1]}"


def describe(spec) -> tuple[str, str, str, str, str]:
    """Row of ``atomtrain arch list``: name, stage, maintainers, deps, source."""
    declared = declarations(spec.module)
    maintainers = declared.get("__maintainers__") or []
    names = (
        ", ".join(m[0] if isinstance(m, (tuple, list)) else str(m) for m in maintainers)
        or "NONE"
    )
    missing = missing_requirements(spec)
    deps = (
        "installed"
        if not missing
        else (f"missing {', '.join(missing)} ({install_hint(spec)})")
    )
    stage = spec.stage
    if stage == "deprecated" and "__deprecated__" in declared:
        try:
            _, removal, _ = deprecation_dates(spec.name, declared["__deprecated__"])
            stage = f"deprecated (removal {removal})"
        except UserError:
            stage = "deprecated (no dates declared)"
    return spec.name, stage, names, deps, spec.source
