"""Batches of structures, read ahead from a packed store while the model works.

Reading a structure from a store is a positional read plus a neighbour list,
both of which release the GIL, so a few threads overlap them with the training
step (and with each other when reads wait on the disk). At most ``depth``
batches are in flight, so memory stays bounded. In-memory datasets need no
reading ahead: their batches are plain lists built on demand, as always.
"""

from __future__ import annotations

from collections import deque
from concurrent.futures import ThreadPoolExecutor
from typing import Iterator, List, Sequence

from metatomic.torch import NeighborListOptions

from atomtrain.data.sequences import Dataset, LazyStructures
from atomtrain.data.structure import Structure
from atomtrain.data.systems import neighbors_of


READ_AHEAD_BATCHES = 4
READ_THREADS = 2


def _load(
    dataset: Dataset, indices: Sequence[int], requests: List[NeighborListOptions]
) -> List[Structure]:
    batch = [dataset[i] for i in indices]
    for structure in batch:
        for options in requests:
            neighbors_of(structure, options)
    return batch


def batches(
    dataset: Dataset,
    index_batches: Sequence[Sequence[int]],
    requests: List[NeighborListOptions],
    depth: int = READ_AHEAD_BATCHES,
    threads: int = READ_THREADS,
) -> Iterator[List[Structure]]:
    """The structures of each batch of indices, in order; read ahead in threads
    when ``dataset`` is lazy. Closing the iterator (an exception, a stop signal)
    cancels what was not started."""
    if not isinstance(dataset, LazyStructures) or depth < 1:
        for indices in index_batches:
            yield [dataset[i] for i in indices]
        return
    pending: deque = deque()
    upcoming = iter(index_batches)
    with ThreadPoolExecutor(threads, thread_name_prefix="atomtrain-read") as pool:
        try:
            for indices in upcoming:
                pending.append(pool.submit(_load, dataset, indices, requests))
                if len(pending) >= depth:
                    break
            while pending:
                batch = pending.popleft().result()
                for indices in upcoming:
                    pending.append(pool.submit(_load, dataset, indices, requests))
                    break
                yield batch
        finally:
            for future in pending:
                future.cancel()
