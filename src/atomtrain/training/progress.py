"""Progress bars on a terminal, and nothing at all anywhere else.

Bars are for a person watching a terminal; in CI logs, SLURM output files or
pipes they are noise (one carriage-return line per update), so ``auto`` shows
them only when both stdout and stderr are terminals.
"""

from __future__ import annotations

import contextlib
import logging
import sys
from typing import IO, Optional

from atomtrain.training.observers import TrainingObserver


def wanted(mode: str) -> bool:
    """Whether ``mode`` (``auto``, ``always``, ``never``) shows bars here."""
    if mode == "always":
        return True
    if mode == "never":
        return False
    return all(_isatty(stream) for stream in (sys.stdout, sys.stderr))


def _isatty(stream) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False


class _NoBar:
    """Stands in for a bar that is not shown."""

    def update(self, n: int = 1) -> None:
        pass

    def close(self) -> None:
        pass


def bar(total: int, desc: str, mode: str, file: Optional[IO[str]] = None, **kwargs):
    """A ``tqdm`` bar when ``mode`` shows bars here, else an object that does
    nothing (with the same ``update`` and ``close``)."""
    if not wanted(mode):
        return _NoBar()
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, file=file or sys.stderr, **kwargs)


def _console_loggers() -> list[logging.Logger]:
    """Loggers that print to the terminal: their lines must go around the bars."""
    found = []
    for logger in (logging.getLogger(), logging.getLogger("atomtrain")):
        for handler in logger.handlers:
            if isinstance(handler, logging.StreamHandler) and handler.stream in (
                sys.stdout,
                sys.stderr,
            ):
                found.append(logger)
                break
    return found


class ProgressBars(TrainingObserver):
    """An epochs bar and, below it, the batches of the current epoch (training,
    then validation), with the running loss."""

    def __init__(
        self,
        num_epochs: Optional[int] = None,
        mode: str = "auto",
        file: Optional[IO[str]] = None,
    ):
        self.enabled = wanted(mode)
        self.num_epochs = num_epochs
        self.file = file
        self.epochs = None
        self.batches = None
        self.epoch = 0
        self.validated = False
        self._redirect = contextlib.ExitStack()

    def _open(self, **kwargs):
        from tqdm import tqdm

        return tqdm(file=self.file or sys.stderr, dynamic_ncols=True, **kwargs)

    def _close_batches(self) -> None:
        if self.batches is not None:
            self.batches.close()
            self.batches = None

    def epoch_started(self, epoch: int, n_steps: int, first_step: int) -> None:
        if not self.enabled:
            return
        if self.epochs is None:
            from tqdm.contrib.logging import logging_redirect_tqdm

            self._redirect.enter_context(
                logging_redirect_tqdm(loggers=_console_loggers())
            )
            self.epochs = self._open(
                total=self.num_epochs, initial=epoch - 1, desc="epochs", unit="epoch"
            )
        self.epoch, self.validated = epoch, False
        self.epochs.n = epoch - 1
        self.epochs.refresh()
        self._close_batches()
        self.batches = self._open(
            total=n_steps,
            initial=first_step,
            desc=f"epoch {epoch}",
            unit="batch",
            leave=False,
        )

    def step_done(self, loss: float) -> None:
        if self.batches is not None:
            self.batches.set_postfix(loss=f"{loss:.4g}", refresh=False)
            self.batches.update(1)

    def validation_started(self, n_batches: int) -> None:
        if not self.enabled:
            return
        self.validated = True
        self._close_batches()
        if n_batches > 0:
            self.batches = self._open(
                total=n_batches, desc="validation", unit="batch", leave=False
            )

    def validation_step_done(self) -> None:
        if self.batches is not None:
            self.batches.update(1)
            if self.batches.n >= (self.batches.total or 0):
                # closed before the epoch's log line, which then prints cleanly
                self._close_batches()

    def epoch_done(self, row: dict) -> None:
        if self.epochs is not None:
            self.epochs.n = int(row.get("epoch", self.epoch))
            if "val loss" in row:
                self.epochs.set_postfix(val_loss=f"{row['val loss']:.4g}")
            self.epochs.refresh()

    def close(self) -> None:
        self._close_batches()
        if self.epochs is not None:
            self.epochs.n = self.epoch if self.validated else self.epoch - 1
            self.epochs.close()
            self.epochs = None
        self._redirect.close()
