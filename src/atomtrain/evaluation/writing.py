"""Predictions as ASE ``Atoms``: written to an extended XYZ file batch by batch,
or collected in memory for the Python API.

A sink receives each evaluated batch (its structures and predictions) and must
not keep more than it needs: the file writer appends and flushes each batch to
``OUTPUT.partial`` and renames it to ``OUTPUT`` when the evaluation ends, so a
million structures are never held at once and a failure leaves what was done
(as ``.partial``: an ``OUTPUT`` file is always complete).
"""

from __future__ import annotations

import os
from typing import IO, List, Optional, Protocol, Sequence

import ase
import ase.io
from ase.calculators.singlepoint import SinglePointCalculator

from atomtrain.data.info import DatasetInfo, display_name
from atomtrain.data.structure import Structure
from atomtrain.training.evaluate import Batch
from atomtrain.uncertainty.names import uncertainty_name


class PredictionSink(Protocol):
    """Where evaluated batches go (a file, a list, a user's callback)."""

    def add(self, structures: Sequence[Structure], predictions: Batch) -> None: ...

    def close(self, completed: bool = True) -> None: ...


def predicted_atoms(
    structures: Sequence[Structure], predictions: Batch, info: DatasetInfo
) -> List[ase.Atoms]:
    """One ``Atoms`` per structure with its predictions: energy, forces and
    stress on a single-point calculator, other targets in ``info`` (per
    structure) or ``arrays`` (per atom) under their short names."""
    frames, atom_offset = [], 0
    for i, structure in enumerate(structures):
        n = len(structure)
        atoms = ase.Atoms(
            numbers=structure.types.numpy(),
            positions=structure.positions.numpy(),
            cell=structure.cell.numpy(),
            pbc=structure.pbc.numpy(),
        )
        results = {}
        for name, target in info.targets.items():
            values = predictions.values[name]
            rows = (
                values[atom_offset : atom_offset + n]
                if target.per_atom
                else values[i : i + 1]
            )
            array = rows.cpu().double().numpy()
            if name == "energy" and not target.per_atom:
                results["energy"] = float(array[0, 0])
            elif target.per_atom:
                atoms.arrays[display_name(name)] = array
            else:
                short = display_name(name)
                atoms.info[short] = (
                    array.ravel() if array.size > 1 else float(array[0, 0])
                )
            sigma = predictions.values.get(uncertainty_name(name))
            if sigma is not None:  # the predicted standard deviation beside it
                sigma = (
                    sigma[atom_offset : atom_offset + n]
                    if target.per_atom
                    else sigma[i]
                )
                sigma = sigma.cpu().double().numpy()
                key = display_name(uncertainty_name(name))
                if target.per_atom:
                    atoms.arrays[key] = sigma
                else:
                    atoms.info[key] = sigma if sigma.size > 1 else float(sigma[0])
            if name != "energy":
                continue
            if name in predictions.forces:
                forces = predictions.forces[name][atom_offset : atom_offset + n]
                results["forces"] = forces.cpu().double().numpy()
            if name in predictions.stress:
                results["stress"] = predictions.stress[name][i].cpu().double().numpy()
        if results:
            atoms.calc = SinglePointCalculator(atoms, **results)
        frames.append(atoms)
        atom_offset += n
    return frames


class ExtxyzWriter:
    """Appends each batch's predictions to ``path + '.partial'``, renamed to
    ``path`` by :meth:`close`."""

    def __init__(self, path: str, info: DatasetInfo):
        self.path = path
        self.partial = path + ".partial"
        self.info = info
        self.count = 0
        folder = os.path.dirname(os.path.abspath(path))
        os.makedirs(folder, exist_ok=True)
        self._file: Optional[IO[str]] = open(self.partial, "w")

    def add(self, structures: Sequence[Structure], predictions: Batch) -> None:
        frames = predicted_atoms(structures, predictions, self.info)
        ase.io.write(self._file, frames, format="extxyz")
        self._file.flush()
        self.count += len(frames)

    def close(self, completed: bool = True) -> None:
        """Publish the file; after a failure (``completed`` False) keep the
        predictions made so far as ``.partial``, or nothing if there are none."""
        if self._file is None:
            return
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        self._file = None
        if completed:
            os.replace(self.partial, self.path)
        elif self.count == 0:
            os.unlink(self.partial)


class AtomsCollector:
    """Keeps every prediction as ``Atoms`` in memory (for notebooks)."""

    def __init__(self, info: DatasetInfo):
        self.info = info
        self.frames: List[ase.Atoms] = []

    def add(self, structures: Sequence[Structure], predictions: Batch) -> None:
        self.frames += predicted_atoms(structures, predictions, self.info)

    def close(self, completed: bool = True) -> None:
        pass
