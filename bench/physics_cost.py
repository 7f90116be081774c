"""Extra cost of the physics terms: ZBL repulsion and long-range electrostatics.

    python bench/physics_cost.py [--architectures soap_bpnn ace_mp] [--repeats 5]

For each architecture, three models that differ only in the physics options
(``plain``, ``zbl: true``, ``long_range: {enable: true}``, the latter for
soap_bpnn and ace_mp only) are built with default hypers for H and O (weights
untrained: the cost does not depend on them), exported, and timed through
``metatomic_ase.MetatomicCalculator`` on the first water frame (192 atoms)
and its 2x2x2 supercell (1,536 atoms), both periodic and above the default
``ewald_max_atoms`` (64: P3M): energy + forces, ``--repeats`` calls of each
model in turn on the same rattled positions after ``--warmup`` calls. One MD
step costs one such call.

Prints the fastest call of each model and its extra cost over the plain one
(the minimum: on a shared machine the median also measures the other
processes; both are in the JSON), and writes
``bench/results/physics_cost.json`` (git-ignored) with the thread count and
the load average before and after: compare only runs on an idle machine.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time

import ase.io
import torch
from soap_bpnn import DATASETS, RESULTS, environment, loadavg, write_results


VARIANTS = {
    "plain": {},
    "zbl": {"zbl": True},
    "long_range": {"long_range": {"enable": True}},
}
HAS_LONG_RANGE = ("soap_bpnn", "ace_mp")


def build(name: str, physics: dict, dtype: torch.dtype):
    from atomtrain.architectures.hypers import defaults_of
    from atomtrain.architectures.registry import (
        import_architecture,
        import_documentation,
    )
    from atomtrain.data.info import DatasetInfo, TargetInfo
    from atomtrain.options.merge import deep_merge

    documentation = import_documentation(name)
    hypers = deep_merge(defaults_of(documentation.ModelHypers), physics)
    info = DatasetInfo(
        [1, 8], {"energy": TargetInfo("energy", gradients=["positions", "strain"])}
    )
    torch.manual_seed(0)
    return import_architecture(name).__model__(hypers, info).to(dtype)


def interleaved(paths: dict, atoms, repeats: int, warmup: int) -> dict:
    """ms per energy + forces call of each model, called in turn on the same
    rattled positions (so that a change of the machine's load touches them
    all alike), after ``warmup`` calls each."""
    from metatomic_ase import MetatomicCalculator

    copies = {}
    for variant, path in paths.items():
        copies[variant] = atoms.copy()
        copies[variant].calc = MetatomicCalculator(path, device="cpu")
    times = {variant: [] for variant in paths}
    for i in range(warmup + repeats):
        for variant, copy in copies.items():
            copy.set_positions(atoms.get_positions())
            copy.rattle(stdev=1e-3, seed=i)
            start = time.perf_counter()
            copy.get_forces()
            if i >= warmup:
                times[variant].append(1000 * (time.perf_counter() - start))
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--architectures", nargs="+", default=["soap_bpnn", "ace_mp", "gnn"]
    )
    parser.add_argument("--replicas", nargs="+", type=int, default=[1, 2])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    dtype = getattr(torch, args.dtype)
    load_before = loadavg()
    from atomtrain.export import save_exported

    frame = ase.io.read(DATASETS["water"]["path"], 0)
    frame.calc = None
    cells = {r: frame.repeat((r, r, r)) for r in args.replicas}
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for name in args.architectures:
            paths = {}
            for variant, physics in VARIANTS.items():
                if variant == "long_range" and name not in HAS_LONG_RANGE:
                    continue
                paths[variant] = os.path.join(folder, f"{name}-{variant}.pt")
                save_exported(build(name, physics, dtype).export(), paths[variant])
            for atoms in cells.values():
                times = interleaved(paths, atoms, args.repeats, args.warmup)
                for variant, values in times.items():
                    rows.append(
                        {
                            "architecture": name,
                            "variant": variant,
                            "atoms": len(atoms),
                            "ms_per_call": round(statistics.median(values), 2),
                            "min_ms": round(min(values), 2),
                        }
                    )
                    print(rows[-1], flush=True)
    # the fastest call of each: on a shared machine the minimum is what the
    # code costs, the median also carries the other processes
    plain = {
        (r["architecture"], r["atoms"]): r["min_ms"]
        for r in rows
        if r["variant"] == "plain"
    }
    print(f"\n{'architecture':<12} {'variant':<11} {'atoms':>6} {'min ms':>9} extra")
    for row in rows:
        base = plain[(row["architecture"], row["atoms"])]
        row["extra_ms"] = round(row["min_ms"] - base, 1)
        row["extra_percent"] = round(100 * (row["min_ms"] / base - 1), 1)
        print(
            f"{row['architecture']:<12} {row['variant']:<11} {row['atoms']:>6} "
            f"{row['min_ms']:>9.1f} {row['extra_ms']:+.1f} ms "
            f"({row['extra_percent']:+.1f} %)"
        )
    results = {
        "rows": rows,
        "dtype": args.dtype,
        "environment": environment(load_before),
    }
    write_results(results, os.path.join(RESULTS, "physics_cost.json"))


if __name__ == "__main__":
    main()
