"""Inference benchmark of an exported model: ms/atom and ASE MD steps/s.

    python bench/inference.py --model model.pt [--replicas 1 2] [--md-steps 50]

For the first structure of the water data set (192 atoms, periodic) and its
supercells (``--replicas 1 2``: 1x1x1 and 2x2x2, i.e. 192 and 1,536 atoms):

1. energy + forces of ``model.pt`` through ``metatomic_ase.MetatomicCalculator``:
   ``--warmup`` calls, then the median (and min) of ``--repeats`` calls on
   rattled positions (``time_inference`` of ``bench/soap_bpnn.py``), in ms/call
   and ms/atom;
2. velocity-Verlet NVE MD in ASE with the same calculator (the code of
   ``examples/md/run_md.py``): ``--md-steps`` steps of ``--md-timestep`` fs from
   ``--md-temperature`` K, in steps/s and ns/day, with the energy drift per atom
   as a sanity check (float32 models round the total energy, ~1e-7 relative).

Prints a table and writes ``bench/results/inference.json`` (git-ignored) with
the torch thread count and the load average before and after: compare timings
only between runs on an otherwise idle machine. The model must know H and O;
``bench/README.md`` says how to get one.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
from typing import Dict, List, Optional

import ase
import ase.io
from soap_bpnn import (
    DATASETS,
    RESULTS,
    ROOT,
    environment,
    loadavg,
    time_inference,
    write_results,
)


sys.path.insert(0, os.path.join(ROOT, "examples", "md"))
from run_md import run_md  # noqa: E402


def model_dtype(model: str, extensions: Optional[str]) -> str:
    """The dtype the model computes in (float32 or float64), from its capabilities."""
    from metatomic.torch import load_atomistic_model

    loaded = load_atomistic_model(model, extensions_directory=extensions)
    return loaded.capabilities().dtype


def cell(frame: ase.Atoms, replicas: int) -> ase.Atoms:
    """``frame`` repeated ``replicas`` times along each cell vector."""
    atoms = frame.repeat((replicas, replicas, replicas))
    atoms.calc = None
    return atoms


def make_calculator(args: argparse.Namespace):
    """``MetatomicCalculator`` of ``--model`` with the options of the command line."""
    from metatomic_ase import MetatomicCalculator

    # cpu, as time_inference of soap_bpnn.py (which has no device option)
    kwargs = {"device": "cpu"}
    if args.extensions:
        kwargs["extensions_directory"] = args.extensions
    if args.neighbor_skin is not None:
        kwargs["neighbor_skin"] = args.neighbor_skin
    return MetatomicCalculator(args.model, **kwargs)


def time_md(atoms: ase.Atoms, args: argparse.Namespace) -> Dict:
    """Steps/s of NVE MD in ASE, after one warm-up evaluation (not timed)."""
    atoms = atoms.copy()
    atoms.calc = make_calculator(args)
    result = run_md(
        atoms,
        steps=args.md_steps,
        timestep=args.md_timestep,
        temperature=args.md_temperature,
        ensemble="nve",
        seed=0,
    )
    return {
        "steps": result.steps,
        "timestep_fs": result.timestep_fs,
        "steps_per_s": result.steps_per_s,
        "ns_per_day": result.steps_per_s * result.timestep_fs * 86400 / 1e6,
        "ms_per_step": 1000 / result.steps_per_s,
        "drift_meV_per_atom": result.drift_meV_per_atom,
        "max_deviation_meV_per_atom": result.max_deviation_meV_per_atom,
        "mean_temperature_K": result.mean_temperature_K,
    }


def print_table(results: Dict) -> None:
    header = (
        f"{'atoms':>6}  {'ms/call':>9}  {'ms/call min':>11}  {'ms/atom':>8}  "
        f"{'MD steps/s':>10}  {'ns/day':>7}  {'drift meV/atom':>14}  {'<T> K':>7}"
    )
    print()
    print(
        f"inference of {results['model']} ({results['dtype']}, "
        f"{results['environment']['torch_threads']} torch threads, "
        f"{results['device']})"
    )
    print(header)
    print("-" * len(header))
    for entry in results["cells"]:
        md = entry.get("md")
        md_text = (
            f"{md['steps_per_s']:>10.2f}  {md['ns_per_day']:>7.3f}  "
            f"{md['drift_meV_per_atom']:>+14.4f}  {md['mean_temperature_K']:>7.0f}"
            if md
            else f"{'-':>10}  {'-':>7}  {'-':>14}  {'-':>7}"
        )
        print(
            f"{entry['n_atoms']:>6}  {entry['ms_per_call_median']:>9.1f}  "
            f"{entry['ms_per_call_min']:>11.1f}  {entry['ms_per_atom_median']:>8.4f}  "
            + md_text
        )


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", required=True, help="exported model.pt (H, O)")
    parser.add_argument("--extensions", help="its extensions folder, if any")
    parser.add_argument(
        "--data",
        default=DATASETS["water"]["path"],
        help="structure file; its frame --index is replicated (default: water)",
    )
    parser.add_argument("--index", type=int, default=0, help="default: 0")
    parser.add_argument(
        "--replicas",
        type=int,
        nargs="+",
        default=[1, 2],
        help="supercells NxNxN to time (default: 1 2, i.e. 192 and 1536 atoms)",
    )
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's)")
    parser.add_argument("--repeats", type=int, default=30, help="default: 30")
    parser.add_argument("--warmup", type=int, default=5, help="default: 5")
    parser.add_argument(
        "--neighbor-skin",
        type=float,
        help="Verlet skin (Å) of MetatomicCalculator (default: its own, 2.0)",
    )
    parser.add_argument(
        "--md-steps", type=int, default=50, help="NVE steps per cell, 0: none"
    )
    parser.add_argument("--md-timestep", type=float, default=0.5, help="fs")
    parser.add_argument("--md-temperature", type=float, default=300.0, help="K")
    parser.add_argument(
        "--md-max-atoms",
        type=int,
        default=2000,
        help="skip MD for larger cells (default: 2000)",
    )
    parser.add_argument(
        "--output",
        default=os.path.join(RESULTS, "inference.json"),
        help="JSON file (default: bench/results/inference.json)",
    )
    args = parser.parse_args(argv)
    if not os.path.exists(args.model):
        print(f"model not found: {args.model} (see bench/README.md)", file=sys.stderr)
        return 1
    if not os.path.exists(args.data):
        print(f"data file not found: {args.data}", file=sys.stderr)
        return 1

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    frame = ase.io.read(args.data, index=args.index)
    load_before = loadavg()
    cells = []
    for replicas in args.replicas:
        atoms = cell(frame, replicas)
        print(f"bench: {len(atoms)} atoms ({replicas}x{replicas}x{replicas})")
        median_ms, min_ms = time_inference(
            args.model,
            args.extensions,
            atoms,
            args.repeats,
            args.warmup,
            args.neighbor_skin,
        )
        entry = {
            "replicas": replicas,
            "n_atoms": len(atoms),
            "periodic": bool(atoms.pbc.all()),
            "ms_per_call_median": median_ms,
            "ms_per_call_min": min_ms,
            "ms_per_atom_median": median_ms / len(atoms),
            "ms_per_atom_min": min_ms / len(atoms),
            "repeats": args.repeats,
            "warmup": args.warmup,
        }
        if args.md_steps > 0 and len(atoms) <= args.md_max_atoms:
            entry["md"] = time_md(atoms, args)
        cells.append(entry)

    results = {
        "model": os.path.abspath(args.model),
        "dtype": model_dtype(args.model, args.extensions),
        "device": "cpu",
        "data": os.path.abspath(args.data),
        "index": args.index,
        "cells": cells,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "environment": environment(load_before, neighbor_skin=args.neighbor_skin),
    }
    print_table(results)
    print(f"load average before / after: {load_before} / {loadavg()}")
    write_results(results, args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
