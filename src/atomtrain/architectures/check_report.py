"""The report card of ``atomtrain arch check``: one line per criterion."""

from __future__ import annotations

import os
import re
import traceback
from dataclasses import dataclass, field
from typing import List


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
    located = re.search(r'File "([^"]+)", line (\d+)', str(error))
    frames = traceback.extract_tb(error.__traceback__)
    if located:  # TorchScript errors name the line of the model's source
        text += f" (at {os.path.basename(located[1])}:{located[2]})"
    elif frames:
        last = frames[-1]
        text += f" (at {os.path.basename(last.filename)}:{last.lineno})"
    return text
