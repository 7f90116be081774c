"""Who maintains an architecture: parsing a contact, and telling a real one from
a placeholder.

A life-cycle criterion (DESIGN.md §3) asks that ``__maintainers__`` name a
contact. A scaffold's template text (``Your Name``, ``you@example.com``) or a
documentation domain (RFC 2606: ``example.com``/``.org``/``.net``, the
``.example``, ``.test``, ``.invalid`` and ``.localhost`` top-level domains)
reaches nobody, so the check refuses it, and ``arch new`` asks for a real one.
"""

from __future__ import annotations

import re
import subprocess
from typing import Callable, Optional, Tuple

from atomtrain.errors import UserError


# an email address or a forge handle such as @octocat
CONTACT = re.compile(r"^@[A-Za-z0-9][\w.-]*$|^[^@\s]+@[^@\s]+\.[^@\s]+$")
PLACEHOLDER_NAMES = {
    "",
    "your name",
    "full name",
    "name",
    "first last",
    "firstname lastname",
    "jane doe",
    "john doe",
    "todo",
    "fixme",
    "tbd",
    "maintainer",
}
PLACEHOLDER_DOMAINS = ("example.com", "example.org", "example.net")
PLACEHOLDER_TLDS = ("example", "test", "invalid", "localhost")
FORMAT = "'Full Name <name@domain>' (an email address or an @handle)"

Maintainer = Tuple[str, str]


def is_placeholder_name(name: str) -> bool:
    return " ".join(str(name).split()).lower() in PLACEHOLDER_NAMES


def placeholder_reason(contact: str) -> Optional[str]:
    """Why ``contact`` reaches nobody, or None when it looks real."""
    contact = str(contact).strip().strip("<>()")
    if not contact:
        return "the contact is empty"
    if not CONTACT.match(contact):
        return f"'{contact}' is neither an email address nor an @handle"
    if contact.startswith("@"):
        return None
    domain = contact.rsplit("@", 1)[1].lower().rstrip(".")
    if any(domain == d or domain.endswith("." + d) for d in PLACEHOLDER_DOMAINS):
        return f"'{contact}' uses {domain}, a domain reserved for examples"
    if domain.rsplit(".", 1)[-1] in PLACEHOLDER_TLDS:
        return f"'{contact}' uses .{domain.rsplit('.', 1)[-1]}, a reserved domain"
    return None


def parse_maintainer(text: str, where: str = "--maintainer") -> Maintainer:
    """``'Name <contact>'`` (or ``'Name contact'``) as ``(name, contact)``,
    refusing a missing or placeholder name or contact."""
    text = " ".join(str(text).split())
    bracketed = re.fullmatch(r"(.*?)\s*<([^<>]*)>", text)
    if bracketed:
        name, contact = bracketed[1].strip(), bracketed[2].strip()
    elif " " in text and CONTACT.match(text.rsplit(" ", 1)[1]):
        name, contact = text.rsplit(" ", 1)
    else:
        name, contact = text, ""
    if is_placeholder_name(name):
        raise UserError(
            f"{where} '{text}': '{name}' is not a maintainer's name (empty or a "
            f"template's placeholder). Give {FORMAT}."
        )
    reason = placeholder_reason(contact)
    if reason is not None:
        raise UserError(
            f"{where} '{text}': {reason}, so nobody could be reached about this "
            f"architecture. Give {FORMAT}."
        )
    return name, contact


def _git_config(key: str) -> str:
    try:
        result = subprocess.run(
            ["git", "config", "--get", key], capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.SubprocessError):
        return ""
    return result.stdout.strip() if result.returncode == 0 else ""


def from_git_config() -> Optional[str]:
    """``'user.name <user.email>'`` from git's configuration, when both are set."""
    name, email = _git_config("user.name"), _git_config("user.email")
    return f"{name} <{email}>" if name and email else None


def ask_maintainer(
    default: Optional[str],
    ask: Optional[Callable[[str], str]] = None,
    tell: Callable[[str], None] = print,
) -> Maintainer:
    """Prompt until a real maintainer is given (Enter keeps ``default``)."""
    ask = ask or input
    shown = f" [{default}]" if default else ""
    while True:
        answer = ask(f"Maintainer of the new architecture, 'Name <email>'{shown}: ")
        answer = answer.strip() or (default or "")
        try:
            return parse_maintainer(answer, "maintainer")
        except UserError as error:
            tell(str(error))
