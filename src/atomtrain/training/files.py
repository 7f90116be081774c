"""Atomic file writes: a crash at any instant leaves the old file or the new one."""

from __future__ import annotations

import os
import tempfile
from typing import Callable


def atomic_write(path: str, write: Callable) -> None:
    """Call ``write(file)`` on a temporary file in the same folder, fsync, rename."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-")
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600 files: use the umask
    try:
        with os.fdopen(fd, "wb") as file:
            write(file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write_text(path: str, text: str) -> None:
    atomic_write(path, lambda file: file.write(text.encode()))


def atomic_copy(source: str, destination: str) -> None:
    """Copy a file so that ``destination`` is never seen half-written."""
    with open(source, "rb") as file:
        data = file.read()
    atomic_write(destination, lambda out: out.write(data))
