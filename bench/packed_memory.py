"""Packed data in bounded memory: synthesise many small structures, pack them,
then draw shuffled batches from across the whole store with neighbour lists.

    python bench/packed_memory.py [--n-structures 1000000] [--batches 1000]
        [--batch-size 16] [--cutoff 5.0] [--fit] [--keep store.atd]

Structures have 3-10 atoms (H, C, N, O) at random positions in a box with every
distance above 0.5 Å, a Morse pair energy plus per-element offsets, and its
forces. Generation streams into the store (never a list of all structures).
Prints the store size, the time to pack, the time per batch (read + neighbour
lists; one by one, then read ahead in threads as training does, on other
batches) and the peak resident memory of the process, which must stay below 2 GB
whatever ``--n-structures``. ``--fit`` also times the streaming composition fit
over the whole store (what training does once before its first epoch).
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time
from typing import Iterator

import numpy as np
import torch


TYPES = np.array([1, 6, 7, 8])
OFFSETS = {1: -13.6, 6: -1029.0, 7: -1485.0, 8: -2042.0}  # eV, per element
MORSE = (0.2, 2.0, 1.5)  # depth (eV), width (1/Å), equilibrium distance (Å)
MIN_DISTANCE = 0.5


def morse(positions: np.ndarray) -> tuple[float, np.ndarray]:
    """Energy and forces of a Morse pair potential over all pairs (no cutoff)."""
    depth, width, r0 = MORSE
    vectors = positions[None, :, :] - positions[:, None, :]  # r_j - r_i
    distances = np.linalg.norm(vectors, axis=-1)
    i, j = np.triu_indices(len(positions), k=1)
    r = distances[i, j]
    decay = np.exp(-width * (r - r0))
    energy = float(np.sum(depth * (1 - decay) ** 2 - depth))
    de_dr = 2 * depth * width * (1 - decay) * decay
    pair = (de_dr / r)[:, None] * vectors[i, j]  # dE/dr_j for each pair
    forces = np.zeros_like(positions)
    np.add.at(forces, j, -pair)
    np.add.at(forces, i, pair)
    return energy, forces


def _positions(n: int, rng: np.random.Generator) -> np.ndarray:
    side = (6.0 * n) ** (1 / 3)  # about 6 Å^3 per atom
    positions = rng.uniform(0, side, size=(n, 3))
    for _ in range(1000):
        distances = np.linalg.norm(positions[:, None] - positions[None], axis=-1)
        np.fill_diagonal(distances, np.inf)
        close = np.where(distances.min(1) <= MIN_DISTANCE)[0]
        if len(close) == 0:
            return positions
        positions[close[0]] = rng.uniform(0, side, size=3)
    raise RuntimeError("could not place the atoms")


def synthetic_structures(n_structures: int, seed: int = 0) -> Iterator:
    """Structures with energy (eV) and forces (eV/Å), one at a time."""
    from atomtrain.data.structure import Structure

    rng = np.random.default_rng(seed)
    for index in range(n_structures):
        n = int(rng.integers(3, 11))
        types = rng.choice(TYPES, size=n)
        positions = _positions(n, rng)
        energy, forces = morse(positions)
        energy += sum(OFFSETS[int(t)] for t in types)
        yield Structure(
            types=torch.from_numpy(types.astype(np.int64)),
            positions=torch.from_numpy(positions),
            cell=torch.zeros(3, 3, dtype=torch.float64),
            pbc=torch.zeros(3, dtype=torch.bool),
            targets={"energy": torch.tensor([[energy]], dtype=torch.float64)},
            forces={"energy": torch.from_numpy(forces)},
            source=f"synthetic:{index}",
        )


def write_store(path: str, n_structures: int, seed: int = 0) -> None:
    """Stream synthetic structures into a packed store at ``path``."""
    from atomtrain.data.packed import PackedWriter, StoredTarget

    target = StoredTarget("energy", "eV", False, 1, forces=True, stress=False)
    with PackedWriter(path, {"energy": target}, ["synthetic"]) as writer:
        for index, structure in enumerate(synthetic_structures(n_structures, seed)):
            writer.add(structure, 0, index)


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-structures", type=int, default=1_000_000)
    parser.add_argument("--batches", type=int, default=1000)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--cutoff", type=float, default=5.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--fit", action="store_true", help="time the baseline fit")
    parser.add_argument("--keep", help="write the store here and keep it")
    parser.add_argument("--store", help="read this existing store (no packing)")
    args = parser.parse_args()

    from metatomic.torch import NeighborListOptions

    from atomtrain.data import loading
    from atomtrain.data.dataset import read_dataset
    from atomtrain.data.systems import neighbors_of

    folder = tempfile.mkdtemp()
    path = args.store or args.keep or os.path.join(folder, "synthetic.atd")
    if not args.store:
        started = time.perf_counter()
        write_store(path, args.n_structures, args.seed)
        pack_s = time.perf_counter() - started
        size_mb = os.path.getsize(path) / 1e6
        print(
            f"packed {args.n_structures:,} structures into {size_mb:.1f} MB in "
            f"{pack_s:.1f} s ({args.n_structures / pack_s:,.0f} structures/s); "
            f"peak RSS so far {peak_rss_mb():.0f} MB",
            flush=True,
        )

    started = time.perf_counter()
    section = {
        "systems": {"read_from": path, "reader": "ase", "length_unit": "angstrom"},
        "targets": {
            "energy": {
                "quantity": "energy",
                "read_from": path,
                "key": "energy",
                "unit": "eV",
                "per_atom": False,
                "num_subtargets": 1,
                "forces": {"read_from": path, "key": "forces", "auto": True},
                "stress": False,
                "virial": False,
            }
        },
    }
    dataset, _ = read_dataset(section, {})
    open_s = time.perf_counter() - started
    options = NeighborListOptions(cutoff=args.cutoff, full_list=False, strict=True)
    order = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(1))
    size = args.batch_size
    while len(order) < 2 * args.batches * size:  # a small store: draw it again
        order = torch.cat([order, order])
    print(f"opened the store in {open_s * 1e3:.0f} ms", flush=True)
    # disjoint batches for each mode, so that neither reads the other's pages
    for mode, depth, first in (("one by one", 0, 0), ("read ahead", 4, args.batches)):
        chunks = [
            order[(first + b) * size : (first + b + 1) * size].tolist()
            for b in range(args.batches)
        ]
        started = time.perf_counter()
        pairs = atoms = 0
        for batch in loading.batches(dataset, chunks, [options], depth=depth):
            for structure in batch:
                pairs += len(neighbors_of(structure, options))
                atoms += len(structure)
        seconds = time.perf_counter() - started
        n_drawn = args.batches * size
        print(
            f"{mode}: {args.batches} shuffled batches of {size} ({n_drawn:,} "
            f"structures, {atoms:,} atoms, {pairs:,} pairs within {args.cutoff} Å) "
            f"in {seconds:.2f} s: {seconds / args.batches * 1e3:.2f} ms per batch, "
            f"{n_drawn / seconds:,.0f} structures/s",
            flush=True,
        )
    if args.fit:
        from atomtrain.data.info import TargetInfo
        from atomtrain.training.baseline_fit import fit_all

        started = time.perf_counter()
        info = TargetInfo("energy", gradients=["positions"])
        fits = fit_all([info], dataset, dataset.atomic_types())
        composition, scale = fits["energy"]
        print(
            f"streaming composition fit over {len(dataset):,} structures in "
            f"{time.perf_counter() - started:.1f} s: "
            f"{[round(float(c), 3) for c in composition.ravel()]} eV, "
            f"force scale {float(scale[0]):.3f} eV/Å",
            flush=True,
        )
    peak = peak_rss_mb()
    print(f"peak RSS {peak:.0f} MB ({'below' if peak < 2048 else 'ABOVE'} 2 GB)")
    if not (args.keep or args.store):
        os.unlink(path)
    os.rmdir(folder)
    return 0 if peak < 2048 else 1


if __name__ == "__main__":
    sys.exit(main())
