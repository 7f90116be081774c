"""Fit every TargetBaseline of a model on the training structures.

The fit streams over the structures in chunks, accumulating sufficient
statistics (the normal equations of the composition fit, per-type running means
and variances, sums of squared forces) instead of stacking the whole training
set into matrices, so it runs in bounded memory over a packed store larger than
memory. A second pass is made only for the residual spread of per-structure
targets without forces.

A model with a fixed physics term (ZBL repulsion, ``zbl: true``) adds it to its
energies after the baseline: the fit sees the energies and forces with that
term subtracted, i.e. the part the baseline and the network have to learn.
"""

from __future__ import annotations

import dataclasses
from typing import Dict, Iterable, Iterator, List, Sequence

import torch

from atomtrain.data.info import DatasetInfo, TargetInfo
from atomtrain.data.structure import Structure
from atomtrain.data.systems import make_system
from atomtrain.nn.baseline import TargetBaseline, TypeIndex
from atomtrain.nn.direct_forces import is_direct_stress
from atomtrain.nn.zbl import ZblRepulsion


CHUNK = 4096  # structures per vectorised update


def fit_baselines(
    model: torch.nn.Module,
    structures: Sequence[Structure],
    dataset_info: DatasetInfo,
    fixed: Dict[str, Dict[int, torch.Tensor]] | None = None,
) -> dict[str, torch.Tensor]:
    """Fit composition and scale of each target; returns the scales found.
    ``fixed`` gives per-element values (isolated-atom energies) that replace
    the composition fit of a target; its scale is fitted around them."""
    modules = {
        m.target_name: m for m in model.modules() if isinstance(m, TargetBaseline)
    }
    infos = [dataset_info.targets[name] for name in modules]
    types = dataset_info.atomic_types
    compositions = {
        name: _per_type(values, types, dataset_info.targets[name].num_subtargets)
        for name, values in (fixed or {}).items()
        if name in modules
    }
    repulsions = [m for m in model.modules() if isinstance(m, ZblRepulsion)]
    if repulsions:
        structures = WithoutRepulsion(structures, repulsions[0], dataset_info)
    fits = fit_all(infos, structures, types, compositions)
    scales = {}
    for name, module in modules.items():
        if name not in fits:
            continue  # no label here (a model continued on other data): keep it
        composition, scale = fits[name]
        module.composition.copy_(composition.to(module.composition))
        module.scale.copy_(scale.to(module.scale))
        scales[name] = scale
    return scales


def fit_one(info: TargetInfo, structures: Sequence[Structure], atomic_types: list[int]):
    """Per-type composition values and a scale for one target."""
    return fit_all([info], structures, atomic_types)[info.name]


def _per_type(
    values: Dict[int, torch.Tensor], atomic_types: list[int], width: int
) -> torch.Tensor:
    """Rows in the order of ``atomic_types``; a type without a value (one the
    model knows from earlier data only) gets zeros, as the fit would give it."""
    rows = torch.zeros(len(atomic_types), width, dtype=torch.float64)
    for row, atomic_type in enumerate(atomic_types):
        if atomic_type in values:
            rows[row] = values[atomic_type].double().reshape(width)
    return rows


def fit_all(
    infos: List[TargetInfo],
    structures: Sequence[Structure],
    atomic_types: list[int],
    fixed: Dict[str, torch.Tensor] | None = None,
) -> Dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """(composition, scale) of every target with at least one label; targets in
    ``fixed`` keep the composition given there (one row per atomic type)."""
    fits = {
        info.name: (_Fit if info.is_scalar else _CartesianFit)(info, atomic_types)
        for info in infos
    }
    for name, composition in (fixed or {}).items():
        fits[name].composition = composition.clone()
    for chunk in _chunks(structures):
        for fit in fits.values():
            fit.first_pass(chunk)
    second = [fit for fit in fits.values() if fit.needs_second_pass()]
    if second:
        for chunk in _chunks(structures):
            for fit in second:
                fit.second_pass(chunk)
    return {name: fit.result() for name, fit in fits.items() if fit.n_labelled}


class WithoutRepulsion:
    """``structures`` (iterated anew at each pass, copies made on the fly) with
    the energies and forces of a model's ZBL repulsion subtracted from its
    energy targets, computed in float64 on the CPU, a chunk at a time."""

    CHUNK = 256

    def __init__(
        self,
        structures: Sequence[Structure],
        zbl: ZblRepulsion,
        dataset_info: DatasetInfo,
    ):
        self.structures = structures
        cpu = torch.device("cpu")
        self.zbl = ZblRepulsion(dataset_info, [zbl.options]).to(cpu, torch.float64)
        self.type_index = TypeIndex(dataset_info.atomic_types)
        self.per_atom = {
            name: dataset_info.targets[name].per_atom for name in self.zbl.targets
        }

    def __len__(self) -> int:
        return len(self.structures)

    def __iter__(self) -> Iterator[Structure]:
        for chunk in _chunks(self.structures, self.CHUNK):
            yield from self._subtract(chunk)

    def _subtract(self, chunk: List[Structure]) -> Iterator[Structure]:
        requests = [self.zbl.options]
        cpu = torch.device("cpu")
        built = [make_system(s, requests, torch.float64, cpu, True) for s in chunk]
        systems = [system for system, _ in built]
        positions = [leaf for _, leaf in built]
        types = self.type_index(torch.cat([s.types for s in chunk]))
        energies = self.zbl.atomic_energies(systems, types)
        gradients = torch.autograd.grad(
            energies.sum(), positions, allow_unused=True, materialize_grads=True
        )
        energies = energies.detach()
        start = 0
        for structure, gradient in zip(chunk, gradients):
            atomic = energies[start : start + len(structure)]
            start += len(structure)
            targets, forces = dict(structure.targets), dict(structure.forces)
            for name, per_atom in self.per_atom.items():
                if name in targets:
                    value = atomic if per_atom else atomic.sum(0, keepdim=True)
                    targets[name] = targets[name] - value.to(targets[name])
                if name in forces:  # the learnt forces: F + dE_zbl/dx
                    forces[name] = forces[name] + gradient.to(forces[name])
            yield dataclasses.replace(structure, targets=targets, forces=forces)


def _chunks(
    structures: Iterable[Structure], size: int = CHUNK
) -> Iterable[List[Structure]]:
    chunk: List[Structure] = []
    for structure in structures:
        chunk.append(structure)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


class _Moments:
    """Count, mean and sum of squared deviations per column, merged chunk by
    chunk (Chan et al.), stable when the mean is much larger than the spread."""

    def __init__(self, shape):
        self.count = torch.zeros(shape[:-1], dtype=torch.float64)
        self.mean = torch.zeros(shape, dtype=torch.float64)
        self.m2 = torch.zeros(shape, dtype=torch.float64)

    def add(self, index, values: torch.Tensor) -> None:
        """Merge the rows ``values`` into the moments at ``index``."""
        n = values.shape[0]
        if n == 0:
            return
        mean = values.mean(0)
        m2 = (values - mean).pow(2).sum(0)
        total = self.count[index] + n
        delta = mean - self.mean[index]
        self.m2[index] += m2 + delta.pow(2) * self.count[index] * n / total
        self.mean[index] += delta * n / total
        self.count[index] = total


class _Fit:
    """Sufficient statistics of one target's composition and scale."""

    def __init__(self, info: TargetInfo, atomic_types: list[int]):
        self.name, self.per_atom = info.name, info.per_atom
        self.types = torch.tensor(atomic_types)
        n_types, k = len(atomic_types), info.num_subtargets
        self.n_labelled = 0
        self.per_type = _Moments((n_types, k))  # per-atom targets
        self.gram = torch.zeros(n_types, n_types, dtype=torch.float64)
        self.rhs = torch.zeros(n_types, k, dtype=torch.float64)
        self.force_squares, self.force_count = 0.0, 0
        self.residual = _Moments((1, k))
        self.composition: torch.Tensor | None = None  # solved, or given

    def _labelled(self, chunk: List[Structure]) -> List[Structure]:
        return [s for s in chunk if self.name in s.targets]

    def _counts(self, usable: List[Structure]) -> torch.Tensor:
        counts = torch.zeros(len(usable), len(self.types), dtype=torch.float64)
        for row, structure in enumerate(usable):
            types, n = torch.unique(structure.types, return_counts=True)
            counts[row, torch.searchsorted(self.types, types)] = n.double()
        return counts

    def first_pass(self, chunk: List[Structure]) -> None:
        usable = self._labelled(chunk)
        if not usable:
            return
        self.n_labelled += len(usable)
        values = torch.cat([s.targets[self.name] for s in usable]).double()
        if self.per_atom:
            types = torch.cat([s.types for s in usable])
            slots = torch.searchsorted(self.types, types)
            for slot in torch.unique(slots).tolist():
                self.per_type.add(slot, values[slots == slot])
            return
        counts = self._counts(usable)
        self.gram += counts.T @ counts
        self.rhs += counts.T @ values
        forces = [s.forces[self.name] for s in usable if self.name in s.forces]
        if forces:
            stacked = torch.cat(forces).double()
            self.force_squares += float(stacked.pow(2).sum())
            self.force_count += stacked.numel()

    def needs_second_pass(self) -> bool:
        return bool(self.n_labelled) and not self.per_atom and not self.force_count

    def _solve(self) -> torch.Tensor:
        if self.composition is None:
            # ridge-regularised least squares: stable with collinear compositions
            n_types = len(self.types)
            gram = self.gram + 1e-8 * torch.eye(n_types, dtype=torch.float64)
            self.composition = torch.linalg.solve(gram, self.rhs)
        return self.composition

    def second_pass(self, chunk: List[Structure]) -> None:
        usable = self._labelled(chunk)
        if not usable:
            return
        counts = self._counts(usable)
        values = torch.cat([s.targets[self.name] for s in usable]).double()
        residual = (values - counts @ self._solve()) / counts.sum(1, keepdim=True)
        self.residual.add(0, residual)

    def result(self) -> tuple[torch.Tensor, torch.Tensor]:
        k = self.rhs.shape[1]
        if self.per_atom:
            composition = self.per_type.mean.clone()
            n = float(self.per_type.count.sum())
            spread = self.per_type.m2.sum(0)
        elif self.force_count:
            composition = self._solve()
            rms = (self.force_squares / self.force_count) ** 0.5
            scale = torch.full((k,), rms, dtype=torch.float64)
            return composition, _usable(scale)
        else:
            composition = self._solve()
            n, spread = float(self.residual.count[0]), self.residual.m2[0]
        if n > 1:
            scale = (spread / (n - 1)).sqrt()  # unbiased, as torch.std
        else:
            scale = torch.ones(k, dtype=torch.float64)
        return composition, _usable(scale)


class _CartesianFit:
    """Vectors and tensors: no composition (a constant vector per element would
    break the rotational symmetry), and a scale that is the RMS of the values
    (per atom for per-structure targets)."""

    def __init__(self, info: TargetInfo, atomic_types: list[int]):
        self.name, self.per_atom = info.name, info.per_atom
        self.components, self.k = info.components, info.num_subtargets
        self.n_types = len(atomic_types)
        # a direct stress is predicted as atomic virials summed over the volume
        self.per_volume = is_direct_stress(info.name)
        self.n_labelled, self.count = 0, 0
        self.squares = torch.zeros(self.k, dtype=torch.float64)

    def first_pass(self, chunk: List[Structure]) -> None:
        for structure in chunk:
            values = structure.targets.get(self.name)
            if values is None:
                continue
            self.n_labelled += 1
            values = values.double().reshape(-1, self.components, self.k)
            if not self.per_atom:
                values = values / len(structure)
            if self.per_volume:
                values = values * float(torch.linalg.det(structure.cell).abs())
            self.squares += values.pow(2).sum((0, 1))
            self.count += values.shape[0] * self.components

    def needs_second_pass(self) -> bool:
        return False

    def result(self) -> tuple[torch.Tensor, torch.Tensor]:
        composition = torch.zeros(self.n_types, self.k, dtype=torch.float64)
        return composition, _usable((self.squares / max(1, self.count)).sqrt())


def _usable(scale: torch.Tensor) -> torch.Tensor:
    return torch.where(scale > 1e-12, scale, torch.ones_like(scale)).clone()
