"""Frames of a data source, whatever its kind, as ASE ``Atoms``.

One entry point for every reader (in-memory datasets, ``atomtrain data pack``,
eval): DeePMD-kit folders go through dpdata, ASE databases through ``ase.db``
(with their key-value pairs and data), any other file through ``ase.io``.
Errors of the underlying readers become one-paragraph ``UserError``s that name
the file and the structure.
"""

from __future__ import annotations

import os
from typing import Iterator, List

from atomtrain.data.ase_db import is_ase_db, iter_ase_db
from atomtrain.data.deepmd import is_deepmd_folder, iter_deepmd
from atomtrain.errors import UserError


def kind_of(path: str) -> str:
    """``deepmd``, ``ase-db`` or ``ase`` (any file ASE reads)."""
    if os.path.isdir(path):
        if is_deepmd_folder(path):
            return "deepmd"
        raise UserError(
            f"'{path}' is a folder but not a DeePMD-kit data folder (no type.raw "
            "in it or below it). Give a structure file (extended XYZ, ASE "
            "database, ...) or a DeePMD-kit system folder."
        )
    if is_ase_db(path):
        return "ase-db"
    return "ase"


def _check_exists(path: str) -> None:
    if not os.path.exists(path):
        raise UserError(
            f"data file '{path}' does not exist (looked in {os.path.abspath(path)}). "
            "Check 'read_from' in your options; relative paths are resolved from "
            "the directory you run atomtrain in."
        )


def _raw_frames(path: str, kind: str) -> Iterator:
    if kind == "deepmd":
        return iter_deepmd(path)
    if kind == "ase-db":
        return iter_ase_db(path)
    import ase.io

    return ase.io.iread(path, index=":")


_ADVICE = {
    "ase": "Give a file in a format ASE reads (extended XYZ is recommended).",
    "ase-db": "Give an ASE database written by ase.db (or ase.io.write).",
}


def iter_frames(path: str) -> Iterator:
    """Frames of ``path`` one at a time (bounded memory for packing)."""
    _check_exists(path)
    kind = kind_of(path)
    frames = _raw_frames(path, kind)
    index = 0
    while True:
        try:
            atoms = next(frames)
        except StopIteration:
            return
        except UserError:
            raise
        except Exception as error:  # readers raise many kinds of errors
            reader = {"ase": "ASE", "ase-db": "ase.db"}.get(kind, "dpdata")
            raise UserError(
                f"could not read structure {index} of '{path}' with {reader}: "
                f"{type(error).__name__}: {error}. {_ADVICE.get(kind, '')}"
            ) from None
        yield atoms
        index += 1


def read_frames(path: str) -> List:
    """Every frame of ``path``; a source with no structure is an error."""
    _check_exists(path)
    if kind_of(path) == "ase":
        frames = _read_with_ase(path)
    else:
        frames = list(iter_frames(path))
    if len(frames) == 0:
        raise UserError(f"data file '{path}' contains no structures.")
    return frames


def _read_with_ase(path: str) -> List:
    import ase.io

    try:
        frames = ase.io.read(path, index=":")
    except Exception as error:  # ASE raises many kinds of errors for bad files
        raise UserError(
            f"could not read '{path}' with ASE: {type(error).__name__}: {error}. "
            f"{_ADVICE['ase']}"
        ) from None
    return frames if isinstance(frames, list) else [frames]
