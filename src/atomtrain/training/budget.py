"""Wall-time budget of a training (``max_time``), summed over restarts."""

from __future__ import annotations

import time

from atomtrain.training.distributed import World


class Clock:
    """Seconds of training used: those of earlier runs of this training (read
    from the checkpoint) plus this run's, counted from the start of the loop."""

    def __init__(self, max_time: float, before: float = 0.0):
        self.max_time = max_time
        self.before = before
        self.started = time.perf_counter()

    @property
    def limited(self) -> bool:
        return self.max_time > 0

    def elapsed(self) -> float:
        return self.before + (time.perf_counter() - self.started)

    def agreed(self, world: World) -> float:
        """Rank 0's elapsed time on every process, so that all processes use the
        same learning rate and stop after the same step. Without a budget the
        time does not matter: 0, and no communication."""
        if not self.limited:
            return 0.0
        return world.broadcast_object(self.elapsed())

    def spent(self, elapsed: float) -> bool:
        return self.limited and elapsed >= self.max_time
