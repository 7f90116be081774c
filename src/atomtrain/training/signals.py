"""Stop training cleanly on SIGTERM, SIGINT or a scheduler's warning signal.

The first signal asks the loop to finish its current step, write a checkpoint
and exit; a second SIGINT interrupts at once (for an impatient user).
"""

from __future__ import annotations

import signal
import threading


SIGNAL_NAMES = {"SIGTERM", "SIGINT", "SIGUSR1", "SIGUSR2", "SIGHUP"}


class StopRequests:
    """Records stop signals while active; restores previous handlers on exit."""

    def __init__(self, names: list[str]):
        self.names = names
        self.received: str | None = None
        self._previous: dict = {}

    def __enter__(self) -> StopRequests:
        if threading.current_thread() is not threading.main_thread():
            return self  # signal handlers can only be installed by the main thread
        for name in self.names:
            number = getattr(signal, name)
            self._previous[number] = signal.signal(number, self._handle)
        return self

    def _handle(self, number, frame) -> None:
        name = signal.Signals(number).name
        if self.received is not None and name == "SIGINT":
            raise KeyboardInterrupt
        self.received = name

    def __exit__(self, *exc) -> None:
        for number, handler in self._previous.items():
            signal.signal(number, handler)
        self._previous.clear()
