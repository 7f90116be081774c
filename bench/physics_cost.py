"""Extra cost of the physics terms: ZBL repulsion and long-range electrostatics.

    python bench/physics_cost.py [--architectures soap_bpnn ace_mp] [--repeats 5]

For each architecture, three models that differ only in the physics options
(``plain``, ``zbl: true``, ``long_range: {enable: true}``, the latter for
soap_bpnn and ace_mp only) are built with default hypers for H and O (weights
untrained: the cost does not depend on them), exported, and timed through
``metatomic_ase.MetatomicCalculator`` on the first water frame (192 atoms,
periodic, Ewald) and its 2x2x2 supercell (1,536 atoms, above the default
``ewald_max_atoms`` of 1,000: P3M): energy + forces, the median of
``--repeats`` calls on rattled positions after ``--warmup`` calls
(``time_inference`` of ``bench/soap_bpnn.py``). One MD step costs one such call.

Prints ms/call and the extra cost over the plain model, and writes
``bench/results/physics_cost.json`` (git-ignored) with the thread count and
the load average before and after: compare only runs on an idle machine.
"""

from __future__ import annotations

import argparse
import os
import tempfile

import ase.io
import torch
from soap_bpnn import (
    DATASETS,
    RESULTS,
    environment,
    loadavg,
    time_inference,
    write_results,
)


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
            for variant, physics in VARIANTS.items():
                if variant == "long_range" and name not in HAS_LONG_RANGE:
                    continue
                path = os.path.join(folder, f"{name}-{variant}.pt")
                save_exported(build(name, physics, dtype).export(), path)
                for atoms in cells.values():
                    median, best = time_inference(
                        path, None, atoms, args.repeats, args.warmup, None
                    )
                    rows.append(
                        {
                            "architecture": name,
                            "variant": variant,
                            "atoms": len(atoms),
                            "ms_per_call": round(median, 2),
                            "min_ms": round(best, 2),
                        }
                    )
                    print(rows[-1], flush=True)
    plain = {
        (r["architecture"], r["atoms"]): r["ms_per_call"]
        for r in rows
        if r["variant"] == "plain"
    }
    print(f"\n{'architecture':<12} {'variant':<11} {'atoms':>6} {'ms/call':>9} extra")
    for row in rows:
        base = plain[(row["architecture"], row["atoms"])]
        row["extra_percent"] = round(100 * (row["ms_per_call"] / base - 1), 1)
        print(
            f"{row['architecture']:<12} {row['variant']:<11} {row['atoms']:>6} "
            f"{row['ms_per_call']:>9.1f} {row['extra_percent']:+.1f} %"
        )
    results = {
        "rows": rows,
        "dtype": args.dtype,
        "environment": environment(load_before),
    }
    write_results(results, os.path.join(RESULTS, "physics_cost.json"))


if __name__ == "__main__":
    main()
