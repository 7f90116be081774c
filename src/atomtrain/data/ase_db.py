"""ASE databases (``.db`` SQLite files, ``.json``), read row by row.

``ase.io.read`` turns a row into Atoms with only the calculator's results
(energy, forces, stress, ...). Datasets often store their labels elsewhere in
the row: as key-value pairs (``REF_energy=...``) or in the row's ``data``
(arrays such as ``REF_forces``). Both are copied into ``atoms.info`` here, so
every key of a row can be named in the target options.
"""

from __future__ import annotations

import os
from typing import Iterator

import numpy as np


def is_ase_db(path: str) -> bool:
    """An ASE database by its name (``.db``, ``.json``) and, for ``.json``, its
    content (ASE's own format detection)."""
    extension = os.path.splitext(path)[1].lower()
    if extension == ".db":
        return os.path.isfile(path)
    if extension == ".json" and os.path.isfile(path):
        from ase.io.formats import filetype

        try:
            return filetype(path, guess=False) == "json"
        except Exception:  # not an ASE file: let the general reader say so
            return False
    return False


def iter_ase_db(path: str) -> Iterator:
    """Frames of the database ``path`` in row order, labels in ``atoms.info``."""
    import ase.db

    database = ase.db.connect(path, type="db" if path.endswith(".db") else "json")
    for row in database.select():
        atoms = row.toatoms()
        atoms.info.update(row.key_value_pairs)
        for key, value in (row.get("data") or {}).items():
            atoms.info[key] = np.asarray(value) if isinstance(value, list) else value
        yield atoms
