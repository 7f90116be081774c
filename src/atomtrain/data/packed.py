"""The packed store (``.atd``): structures and targets on disk, read one at a time.

Format, and why. One file, so that it is copied, moved and named like any other
data file::

    header    16-byte magic, uint32 format version, 12 bytes reserved
    records   one per structure, back to back (8-byte aligned)
    index     int32 atoms per structure, uint32 CRC-32 per record
    footer    JSON: targets with quantity/unit/shape, which gradients were found,
              atomic types, source files, offsets
    trailer   uint64 footer offset, uint64 footer length, uint32 version, 4-byte end
              magic

Each record holds everything of one structure (float64 positions, cell, every
target's values, forces and stress; int64 source frame; int32 types and source
file; one byte per pbc direction and per "label present" flag), so a random
structure costs one positional read (``os.pread``) of a few hundred bytes.
Records are read with ``pread`` rather than memory-mapped: pages of a mapping
count in the resident memory as a shuffled epoch touches them, while a read
copies only what a batch needs. Memory is bounded by the index (16 bytes per
structure) plus one batch. The writer streams records into a temporary file
next to the destination and renames it once the index and footer are written
and synced, so a store is either complete or absent; the trailer, sizes and a
CRC per record make a truncated or damaged store fail with a clear message
instead of wrong data. Values are in Å and eV (energies converted on packing),
so a store needs no unit options.
"""

from __future__ import annotations

import json
import os
import struct
import tempfile
import zlib
from array import array
from dataclasses import asdict, dataclass
from typing import Dict, List

import numpy as np
import torch

from atomtrain import __version__
from atomtrain.data.sequences import LazyStructures
from atomtrain.data.structure import Structure
from atomtrain.errors import UserError


MAGIC = b"ATOMTRAIN-PACKED"
END_MAGIC = b"ATDE"
FORMAT_VERSION = 1
HEADER = struct.Struct("<16sI12x")  # 32 bytes: records start 8-byte aligned
TRAILER = struct.Struct("<QQI4s")  # 24 bytes
SUFFIX = ".atd"


@dataclass
class StoredTarget:
    """A target as stored: its record layout, and how many labels were found."""

    quantity: str
    unit: str
    per_atom: bool
    num_subtargets: int
    forces: bool  # a forces slot in every record
    stress: bool  # a stress slot in every record (virials are stored as stress)
    n_values: int = 0
    n_forces: int = 0
    n_stress: int = 0
    rank: int = 0  # Cartesian rank of the values: 3**rank components each

    @property
    def width(self) -> int:
        """Numbers per structure (or per atom)."""
        return 3**self.rank * self.num_subtargets


class Layout:
    """Where each quantity of a record of ``n`` atoms lies."""

    def __init__(self, targets: Dict[str, StoredTarget]):
        self.targets = targets

    def floats(self, n: int) -> int:
        count = 3 * n + 9
        for target in self.targets.values():
            rows = n if target.per_atom else 1
            count += rows * target.width
            count += 3 * n if target.forces else 0
            count += 9 if target.stress else 0
        return count

    def flags(self) -> int:
        return 3 + sum(1 + t.forces + t.stress for t in self.targets.values())

    def size(self, n: int) -> int:
        raw = 8 * self.floats(n) + 8 + 4 * (n + 1) + self.flags()
        return (raw + 7) // 8 * 8

    def sizes(self, n_atoms: np.ndarray) -> np.ndarray:
        """Record sizes for an array of atom counts (vectorised :meth:`size`)."""
        n = n_atoms.astype(np.int64)
        per_atom = 3 + sum(
            (t.width if t.per_atom else 0) + (3 if t.forces else 0)
            for t in self.targets.values()
        )
        fixed = 9 + sum(
            (0 if t.per_atom else t.width) + (9 if t.stress else 0)
            for t in self.targets.values()
        )
        raw = 8 * (per_atom * n + fixed) + 8 + 4 * (n + 1) + self.flags()
        return (raw + 7) // 8 * 8

    def encode(self, structure: Structure, source: int, frame: int) -> bytes:
        n = len(structure)
        floats = [structure.positions.numpy().ravel(), structure.cell.numpy().ravel()]
        flags = [structure.pbc.numpy().astype(np.uint8)]
        for name, target in self.targets.items():
            rows = n if target.per_atom else 1
            value = structure.targets.get(name)
            shape = (rows * target.width,)
            floats.append(np.zeros(shape) if value is None else value.numpy().ravel())
            present = [value is not None]
            if target.forces:
                forces = structure.forces.get(name)
                floats.append(np.zeros(3 * n) if forces is None else forces.numpy())
                present.append(forces is not None)
            if target.stress:
                stress = structure.stress.get(name)
                floats.append(np.zeros(9) if stress is None else stress.numpy())
                present.append(stress is not None)
            flags.append(np.array(present, dtype=np.uint8))
        parts = [
            np.concatenate([np.ravel(f) for f in floats]).astype("<f8").tobytes(),
            np.array([frame], dtype="<i8").tobytes(),
            structure.types.numpy().astype("<i4").tobytes(),
            np.array([source], dtype="<i4").tobytes(),
            np.concatenate(flags).tobytes(),
        ]
        record = b"".join(parts)
        return record + bytes(self.size(n) - len(record))

    def decode(self, record: bytes, n: int):
        """(types, positions, cell, pbc, {name: (values, forces, stress)}, source,
        frame); a label absent from the record is None."""
        n_floats = self.floats(n)
        floats = np.frombuffer(record, dtype="<f8", count=n_floats).astype(np.float64)
        offset = 8 * n_floats
        frame = int(np.frombuffer(record, dtype="<i8", count=1, offset=offset)[0])
        offset += 8
        ints = np.frombuffer(record, dtype="<i4", count=n + 1, offset=offset)
        offset += 4 * (n + 1)
        flags = np.frombuffer(record, dtype=np.uint8, count=self.flags(), offset=offset)
        positions = floats[: 3 * n].reshape(n, 3)
        cell = floats[3 * n : 3 * n + 9].reshape(3, 3)
        at, flag = 3 * n + 9, 3
        labels = {}
        for name, target in self.targets.items():
            rows = n if target.per_atom else 1
            size = rows * target.width
            values = floats[at : at + size].reshape(rows, target.width)
            at += size
            values = values if flags[flag] else None
            flag += 1
            forces = stress = None
            if target.forces:
                forces = floats[at : at + 3 * n].reshape(n, 3) if flags[flag] else None
                at, flag = at + 3 * n, flag + 1
            if target.stress:
                stress = floats[at : at + 9].reshape(3, 3) if flags[flag] else None
                at, flag = at + 9, flag + 1
            labels[name] = (values, forces, stress)
        types = ints[:n].astype(np.int64)
        return (
            types,
            positions,
            cell,
            flags[:3].astype(bool),
            labels,
            int(ints[n]),
            frame,
        )


class PackedWriter:
    """Stream structures into a new store; :meth:`close` makes it appear whole.

    Use as a context manager: an exception leaves no file behind (and any
    previous store at ``path`` untouched)."""

    def __init__(self, path: str, targets: Dict[str, StoredTarget], sources: List[str]):
        self.path = path
        self.targets = targets
        self.layout = Layout(targets)
        self.sources = list(sources)
        folder = os.path.dirname(os.path.abspath(path))
        os.makedirs(folder, exist_ok=True)
        fd, self.tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-", suffix=SUFFIX)
        self.file = os.fdopen(fd, "wb")
        self.file.write(HEADER.pack(MAGIC, FORMAT_VERSION))
        self.n_atoms = array("i")
        self.checksums = array("I")
        self.types: set[int] = set()

    def add(self, structure: Structure, source: int, frame: int) -> None:
        record = self.layout.encode(structure, source, frame)
        self.file.write(record)
        self.n_atoms.append(len(structure))
        self.checksums.append(zlib.crc32(record))
        self.types.update(np.unique(structure.types.numpy()).tolist())
        for name, target in self.targets.items():
            target.n_values += name in structure.targets
            target.n_forces += name in structure.forces
            target.n_stress += name in structure.stress

    def close(self) -> None:
        index_offset = self.file.tell()
        self.file.write(np.asarray(self.n_atoms, dtype="<i4").tobytes())
        self.file.write(np.asarray(self.checksums, dtype="<u4").tobytes())
        footer = {
            "format": "atomtrain packed structures",
            "version": FORMAT_VERSION,
            "written_by": f"atomtrain {__version__}",
            "n_structures": len(self.n_atoms),
            "n_atoms": int(np.sum(self.n_atoms, dtype=np.int64)),
            "length_unit": "angstrom",
            "energy_unit": "eV",
            "atomic_types": sorted(self.types),
            "targets": {name: asdict(t) for name, t in self.targets.items()},
            "sources": self.sources,
            "index_offset": index_offset,
        }
        footer_offset = self.file.tell()
        data = json.dumps(footer).encode()
        self.file.write(data)
        self.file.write(
            TRAILER.pack(footer_offset, len(data), FORMAT_VERSION, END_MAGIC)
        )
        self.file.flush()
        os.fsync(self.file.fileno())
        self.file.close()
        os.replace(self.tmp, self.path)

    def abort(self) -> None:
        self.file.close()
        if os.path.exists(self.tmp):
            os.unlink(self.tmp)

    def __enter__(self) -> PackedWriter:
        return self

    def __exit__(self, kind, error, traceback) -> None:
        if kind is None:
            self.close()
        else:
            self.abort()


def is_packed(path: str) -> bool:
    """A ``.atd`` name, or a file that starts with the store's magic bytes."""
    if path.endswith(SUFFIX):
        return True
    try:
        with open(path, "rb") as file:
            return file.read(len(MAGIC)) == MAGIC
    except OSError:
        return False


def _damaged(path: str, what: str) -> UserError:
    return UserError(
        f"packed data file '{path}' is damaged or incomplete: {what}. It may have "
        "been truncated by a copy or a full disk; write it again with 'atomtrain "
        "data pack'."
    )


class PackedStore:
    """An open store: its footer, its index, and reads of single records."""

    def __init__(self, path: str):
        self.path = path
        self.fd = -1
        if not os.path.exists(path):
            raise UserError(
                f"packed data file '{path}' does not exist (looked in "
                f"{os.path.abspath(path)}). Write it with 'atomtrain data pack "
                f"input.xyz -o {os.path.basename(path)}', or check 'read_from'."
            )
        self.fd = os.open(path, os.O_RDONLY)
        try:
            self._read_index()
        except BaseException:
            self.close()
            raise

    def _read(self, size: int, offset: int) -> bytes:
        data = os.pread(self.fd, size, offset)
        if len(data) != size:
            raise _damaged(self.path, f"{size} bytes expected at offset {offset}")
        return data

    def _read_index(self) -> None:
        path, size = self.path, os.fstat(self.fd).st_size
        start = os.pread(self.fd, HEADER.size, 0)
        if not start.startswith(MAGIC[: len(start)]) or not start:
            raise UserError(
                f"'{path}' is not a packed atomtrain data file (it does not start "
                f"with {MAGIC.decode()}). Give a file written by 'atomtrain data "
                "pack', or a structure file ASE reads (extended XYZ, ...)."
            )
        if size < HEADER.size:
            raise _damaged(path, f"it has only {size} bytes")
        _, version = HEADER.unpack(start)
        if version > FORMAT_VERSION:
            raise UserError(
                f"packed data file '{path}' was written by a newer atomtrain "
                f"(format version {version}; this atomtrain reads up to version "
                f"{FORMAT_VERSION}). Upgrade atomtrain (pip install -U atomtrain), "
                "or pack the data again with this version."
            )
        if size < HEADER.size + TRAILER.size:
            raise _damaged(path, f"it has only {size} bytes")
        footer_offset, footer_size, _, end = TRAILER.unpack(
            self._read(TRAILER.size, size - TRAILER.size)
        )
        if end != END_MAGIC or footer_offset + footer_size + TRAILER.size != size:
            raise _damaged(path, "its end (index and footer) is missing")
        try:
            footer = json.loads(self._read(footer_size, footer_offset))
            n = int(footer["n_structures"])
            index_offset = int(footer["index_offset"])
            self.targets = {
                name: StoredTarget(**t) for name, t in footer["targets"].items()
            }
        except (ValueError, KeyError, TypeError) as error:
            raise _damaged(path, f"its footer cannot be read ({error})") from None
        if index_offset + 8 * n != footer_offset:
            raise _damaged(path, "the index does not fit between records and footer")
        self.footer = footer
        self.layout = Layout(self.targets)
        index = self._read(8 * n, index_offset)
        self.n_atoms = np.frombuffer(index, dtype="<i4", count=n).astype(np.int64)
        self.checksums = np.frombuffer(index, dtype="<u4", count=n, offset=4 * n)
        if n and self.n_atoms.min() < 1:
            raise _damaged(path, "its index lists a structure without atoms")
        self.offsets = np.empty(n + 1, dtype=np.int64)
        self.offsets[0] = HEADER.size
        np.cumsum(self.layout.sizes(self.n_atoms), out=self.offsets[1:])
        self.offsets[1:] += HEADER.size
        if self.offsets[-1] != index_offset:
            raise _damaged(path, "the record sizes do not add up to the index")

    def __len__(self) -> int:
        return len(self.n_atoms)

    def record(self, index: int):
        """The decoded record of structure ``index``, its checksum verified."""
        start, end = int(self.offsets[index]), int(self.offsets[index + 1])
        data = self._read(end - start, start)
        if zlib.crc32(data) != int(self.checksums[index]):
            raise _damaged(self.path, f"structure {index} fails its checksum")
        return self.layout.decode(data, int(self.n_atoms[index]))

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __del__(self):
        self.close()

    def __getstate__(self):  # worker processes reopen the file
        return {"path": self.path}

    def __setstate__(self, state):
        self.__init__(state["path"])


@dataclass
class Selected:
    """A stored target as a dataset section asks for it."""

    output: str  # name in Structure.targets (the output name)
    stored: str  # name in the store
    forces: bool
    stress: bool


class PackedDataset(LazyStructures):
    """The structures of a store with the selected targets, built on access."""

    def __init__(self, store: PackedStore, selected: List[Selected]):
        self.store = store
        self.selected = selected

    def __len__(self) -> int:
        return len(self.store)

    def sizes(self) -> np.ndarray:
        return self.store.n_atoms

    def atomic_types(self) -> List[int]:
        return list(self.store.footer["atomic_types"])

    def structure(self, index: int) -> Structure:
        types, positions, cell, pbc, labels, source, frame = self.store.record(index)
        structure = Structure(
            types=torch.from_numpy(types),
            positions=torch.from_numpy(positions),
            cell=torch.from_numpy(cell),
            pbc=torch.from_numpy(pbc),
            source=f"{self.store.footer['sources'][source]}:{frame}",
        )
        for choice in self.selected:
            values, forces, stress = labels[choice.stored]
            if values is not None:
                structure.targets[choice.output] = torch.from_numpy(values)
            if choice.forces and forces is not None:
                structure.forces[choice.output] = torch.from_numpy(forces)
            if choice.stress and stress is not None:
                structure.stress[choice.output] = torch.from_numpy(stress)
        return structure
