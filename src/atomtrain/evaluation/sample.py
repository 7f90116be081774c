"""A bounded, uniform sample of (predicted, reference) pairs for parity plots.

Evaluating millions of structures must not keep every prediction: each
(target, kind) keeps at most ``size`` pairs, a uniform random sample of all the
pairs seen (reservoir sampling, seeded so that plots are reproducible). The
metrics never use this sample; they are accumulated exactly elsewhere.
"""

from __future__ import annotations

from typing import Dict, Tuple

import numpy as np


Key = Tuple[str, str]  # (target name, "values" | "forces" | "stress")


class _Reservoir:
    def __init__(self, size: int, random: np.random.Generator):
        self.size = size
        self.random = random
        self.predicted = np.empty(0)
        self.reference = np.empty(0)
        self.seen = 0

    def add(self, predicted: np.ndarray, reference: np.ndarray) -> None:
        n = len(predicted)
        free = max(0, self.size - len(self.predicted))
        if free:  # still filling: keep the first pairs as they come
            self.predicted = np.concatenate([self.predicted, predicted[:free]])
            self.reference = np.concatenate([self.reference, reference[:free]])
        if n > free:
            # Algorithm R, vectorised: pair number t (0-based over all pairs
            # seen) replaces a random slot with probability size / (t + 1)
            t = self.seen + np.arange(free, n)
            slots = (self.random.random(len(t)) * (t + 1)).astype(np.int64)
            chosen = np.nonzero(slots < self.size)[0]
            # later pairs overwrite earlier ones drawn for the same slot, as in
            # the sequential algorithm (fancy assignment keeps the last write)
            self.predicted[slots[chosen]] = predicted[free:][chosen]
            self.reference[slots[chosen]] = reference[free:][chosen]
        self.seen += n


class ParitySample:
    """At most ``size`` (predicted, reference) pairs per (target, kind)."""

    def __init__(self, size: int = 20_000, seed: int = 0):
        self.size = size
        self.random = np.random.default_rng(seed)
        self._reservoirs: Dict[Key, _Reservoir] = {}

    def add(self, key: Key, predicted: np.ndarray, reference: np.ndarray) -> None:
        if self.size <= 0:
            return
        reservoir = self._reservoirs.get(key)
        if reservoir is None:
            reservoir = self._reservoirs[key] = _Reservoir(self.size, self.random)
        reservoir.add(np.ravel(predicted), np.ravel(reference))

    def pairs(self) -> Dict[Key, Tuple[np.ndarray, np.ndarray]]:
        """(predicted, reference) arrays per key, in insertion order."""
        return {key: (r.predicted, r.reference) for key, r in self._reservoirs.items()}

    def seen(self, key: Key) -> int:
        """How many pairs went through (the sample holds at most ``size``)."""
        return self._reservoirs[key].seen
