"""Datasets that are not lists: lazy structures read on access, joined or split.

In-memory datasets stay plain lists of :class:`Structure` (with cached neighbour
lists). A packed store is a :class:`LazyStructures`: indexing it reads one
structure from disk, so a dataset larger than memory can be shuffled, split and
batched without being loaded. Helpers here accept both kinds.
"""

from __future__ import annotations

import bisect
from typing import Iterator, List, Sequence, Union, overload

import numpy as np

from atomtrain.data.structure import Structure


class LazyStructures(Sequence[Structure]):
    """A sequence whose structures are built on access and never cached.

    Subclasses implement ``__len__``, :meth:`structure`, :meth:`sizes` and
    :meth:`atomic_types`; slicing and iteration build the structures one by one.
    """

    def structure(self, index: int) -> Structure:
        raise NotImplementedError

    def sizes(self) -> np.ndarray:
        """Atoms per structure, without reading the structures."""
        raise NotImplementedError

    def atomic_types(self) -> List[int]:
        """Atomic numbers present (a superset is allowed), without reading."""
        raise NotImplementedError

    @overload
    def __getitem__(self, index: int) -> Structure: ...

    @overload
    def __getitem__(self, index: slice) -> List[Structure]: ...

    def __getitem__(self, index):
        if isinstance(index, slice):
            return [self.structure(i) for i in range(*index.indices(len(self)))]
        index = int(index)
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError(f"structure {index} of {len(self)}")
        return self.structure(index)

    def __iter__(self) -> Iterator[Structure]:
        for index in range(len(self)):
            yield self.structure(index)


Dataset = Union[List[Structure], LazyStructures]


class Subset(LazyStructures):
    """The structures of ``base`` at ``indices`` (a random split)."""

    def __init__(self, base: LazyStructures, indices):
        self.base = base
        self.indices = np.asarray(indices, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.indices)

    def structure(self, index: int) -> Structure:
        return self.base.structure(int(self.indices[index]))

    def sizes(self) -> np.ndarray:
        return self.base.sizes()[self.indices]

    def atomic_types(self) -> List[int]:
        return self.base.atomic_types()


class Concatenated(LazyStructures):
    """Several datasets, lists or lazy, one after the other."""

    def __init__(self, parts: Sequence[Dataset]):
        self.parts = list(parts)
        self.starts = np.cumsum([0] + [len(p) for p in self.parts]).tolist()

    def __len__(self) -> int:
        return self.starts[-1]

    def structure(self, index: int) -> Structure:
        part = bisect.bisect_right(self.starts, index) - 1
        return self.parts[part][index - self.starts[part]]

    def sizes(self) -> np.ndarray:
        if not self.parts:
            return np.zeros(0, dtype=np.int64)
        return np.concatenate([sizes_of(p) for p in self.parts])

    def atomic_types(self) -> List[int]:
        return sorted({t for p in self.parts for t in atomic_types_of(p)})


def concatenate(datasets: Sequence[Dataset]) -> Dataset:
    """One dataset: a flat list when every part is a list (as it always was),
    a lazy :class:`Concatenated` otherwise."""
    if all(isinstance(d, list) for d in datasets):
        return [s for dataset in datasets for s in dataset]
    if len(datasets) == 1:
        return datasets[0]
    return Concatenated(datasets)


def subset(dataset: Dataset, indices: List[int]) -> Dataset:
    """The structures at ``indices``: a list for a list, lazy for lazy data."""
    if isinstance(dataset, LazyStructures):
        return Subset(dataset, indices)
    return [dataset[i] for i in indices]


def sizes_of(dataset: Dataset) -> Sequence[int]:
    """Atoms per structure (read from the index of lazy data)."""
    if isinstance(dataset, LazyStructures):
        return dataset.sizes()
    return [len(s) for s in dataset]


def atomic_types_of(dataset: Dataset) -> List[int]:
    if isinstance(dataset, LazyStructures):
        return list(dataset.atomic_types())
    return sorted({int(t) for s in dataset for t in s.types.unique()})


def in_memory(dataset: Dataset) -> List[Structure]:
    """The structures held in memory (whose neighbour lists are cached)."""
    if isinstance(dataset, Concatenated):
        return [s for part in dataset.parts for s in in_memory(part)]
    if isinstance(dataset, LazyStructures):
        return []
    return list(dataset)
