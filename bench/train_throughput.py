"""Training throughput of every atomtrain architecture on the benchmark data sets.

    python bench/train_throughput.py [--archs gnn ace_mp:small] [--datasets water
        ethanol] [--epochs 3] [--batch-size 8] [--workdir DIR] [--output FILE]

For each architecture (default: the in-tree stable ones, ``atomtrain arch list``)
and each data set, trains with the architecture's default hypers through the
command line (``atomtrain train options.yaml``, batch 8, ``validation_set: 0.1``,
``seed: 0``, float32) under ``/usr/bin/time -v``, with the helpers of
``bench/soap_bpnn.py`` (``write_options``, ``train``, ``read_run``,
``epoch_times``), and reports:

- seconds per epoch: the mean of epochs 2..N from the cumulative ``time_s``
  column of ``train.csv`` (the first epoch, which may carry first-call costs,
  is reported apart; ``time_s`` starts after the neighbour lists and the
  baseline fit); an epoch includes its validation pass;
- training structures/s and atoms/s (training structures per second of epoch);
- the peak RSS of the training process;
- the validation energy and force MAE after the last epoch (a sanity check: a
  few epochs are far from converged).

Data sets (``bench/soap_bpnn.py``'s): ``water`` is ``<repo>/../shared/data/
water-dpmd/water_train.xyz`` (320 periodic frames of 64 H2O from DeePMD-kit's
water example, see PROVENANCE.txt there; eV; 288 train / 32 validation);
``ethanol`` is ``tests/resources/ethanol_reduced_100.xyz`` (100 ethanol
molecules, kcal/mol, forces key ``forces``; 90 / 10).

Prints one table and writes ``bench/results/train_throughput.json`` with the
load average before and after each run, the torch thread count, the processor
and the torch version: timings are only comparable on an otherwise idle machine.
"""

import argparse
import glob
import os
import re
import sys
import tempfile

import ase.io
import numpy as np
from soap_bpnn import (
    DATASETS,
    RESULTS,
    column,
    environment,
    epoch_times,
    loadavg,
    read_run,
    train,
    write_options,
    write_results,
)


def stable_architectures():
    """Names of the in-tree architectures of the stable stage."""
    from atomtrain.architectures.registry import all_architectures

    return sorted(
        name
        for name, spec in all_architectures().items()
        if spec.stage == "stable" and spec.source == "in-tree"
    )


def parameters(folder):
    """Number of parameters from ``train.log`` ("model has N parameters")."""
    for log in glob.glob(os.path.join(folder, "outputs", "*", "*", "train.log")):
        with open(log) as file:
            match = re.search(r"model has ([\d,]+) parameters", file.read())
        if match:
            return int(match.group(1).replace(",", ""))
    return None


def run_one(spec, dataset, frames, args, folder):
    """Train ``spec`` (an architecture name, or ``name:preset`` for one of its
    named presets) on ``dataset``."""
    arch, _, preset = spec.partition(":")
    path, unit = DATASETS[dataset]["path"], DATASETS[dataset]["unit"]
    os.makedirs(folder, exist_ok=True)
    write_options(
        folder,
        os.path.abspath(path),
        unit,
        args.epochs,
        args.batch_size,
        arch,
        model={"preset": preset} if preset else None,
    )
    print(f"bench: {arch} on {dataset} ({args.epochs} epochs) in {folder}", flush=True)
    load_before = loadavg()
    peak_mib, peak_source, wall_s = train(folder, log="stdout.txt")
    load_after = loadavg()
    rows, counts = read_run(folder)
    n_train, n_val = counts
    mean_s, median_s, first_s = epoch_times(rows)
    atoms = float(np.mean([len(f) for f in frames]))
    energy_mae, _ = column(rows, "val energy MAE")
    forces_mae, _ = column(rows, "val forces MAE")
    return {
        "arch": spec,
        "dataset": dataset,
        "data": os.path.abspath(path),
        "energy_unit": unit,
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "n_train": n_train,
        "n_val": n_val,
        "atoms_per_structure": atoms,
        "parameters": parameters(folder),
        "training_wall_s": wall_s,
        "first_epoch_s": first_s,
        "seconds_per_epoch": mean_s,
        "seconds_per_epoch_median": median_s,
        "structures_per_s": n_train / mean_s,
        "atoms_per_s": n_train * atoms / mean_s,
        "peak_rss_mib": peak_mib,
        "peak_rss_source": peak_source,
        "val_energy_mae_mev_per_atom": energy_mae,
        "val_forces_mae_mev_per_A": forces_mae,
        "loadavg_before": load_before,
        "loadavg_after": load_after,
    }


def print_table(runs):
    formats = [
        ("train / val structures", lambda r: f"{r['n_train']} / {r['n_val']}"),
        ("atoms per structure", lambda r: f"{r['atoms_per_structure']:.0f}"),
        ("parameters", lambda r: f"{r['parameters']:,}" if r["parameters"] else "?"),
        ("first epoch (s)", lambda r: f"{r['first_epoch_s']:.1f}"),
        ("s/epoch (mean, epochs 2..N)", lambda r: f"{r['seconds_per_epoch']:.2f}"),
        ("training structures/s", lambda r: f"{r['structures_per_s']:.2f}"),
        ("training atoms/s", lambda r: f"{r['atoms_per_s']:.0f}"),
        ("peak RSS (MiB)", lambda r: f"{r['peak_rss_mib']:.0f}"),
        (
            "val energy MAE (meV/atom)",
            lambda r: f"{r['val_energy_mae_mev_per_atom']:.2f}",
        ),
        ("val forces MAE (meV/Å)", lambda r: f"{r['val_forces_mae_mev_per_A']:.1f}"),
        ("load average before", lambda r: " ".join(map(str, r["loadavg_before"]))),
        ("load average after", lambda r: " ".join(map(str, r["loadavg_after"]))),
    ]
    width = max(len(label) for label, _ in formats)
    cell = max(18, *(len(f"{r['dataset']} {r['arch']}") + 2 for r in runs))
    print()
    print(
        f"{'':<{width}}"
        + "".join(f"{r['dataset'] + ' ' + r['arch']:>{cell}}" for r in runs)
    )
    for label, value in formats:
        print(f"{label:<{width}}" + "".join(f"{value(r):>{cell}}" for r in runs))


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--archs",
        nargs="+",
        help="default: the in-tree stable architectures; NAME:PRESET trains one of "
        "an architecture's presets (e.g. ace_mp:small)",
    )
    parser.add_argument(
        "--datasets", nargs="+", choices=sorted(DATASETS), default=["water", "ethanol"]
    )
    parser.add_argument("--epochs", type=int, default=3, help="default: 3 (>= 2)")
    parser.add_argument("--batch-size", type=int, default=8, help="default: 8")
    parser.add_argument(
        "--workdir", help="run in this folder and keep it (default: a temporary one)"
    )
    parser.add_argument(
        "--output", default=os.path.join(RESULTS, "train_throughput.json")
    )
    args = parser.parse_args()
    if args.epochs < 2:
        parser.error("--epochs must be at least 2 (the first epoch is left out)")
    archs = args.archs or stable_architectures()

    if args.workdir:
        os.makedirs(args.workdir, exist_ok=True)
        workdir, cleanup = os.path.abspath(args.workdir), None
    else:
        cleanup = tempfile.TemporaryDirectory(prefix="bench-throughput-")
        workdir = cleanup.name
    runs = []
    load_before = loadavg()
    try:
        for dataset in args.datasets:
            path = DATASETS[dataset]["path"]
            if not os.path.exists(path):
                sys.exit(f"data file not found: {path}")
            frames = ase.io.read(path, ":")
            for arch in archs:
                folder = os.path.join(workdir, f"{dataset}-{arch.replace(':', '-')}")
                runs.append(run_one(arch, dataset, frames, args, folder))
    finally:
        if cleanup is not None:
            cleanup.cleanup()
    results = {
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "runs": runs,
        "environment": environment(load_before),
    }
    print_table(runs)
    env = results["environment"]
    print(
        f"{env['cpu']}, {env['cpu_count']} cores, torch {env['torch']} with "
        f"{env['torch_threads']} threads; load average before / after: "
        f"{env['loadavg_before']} / {env['loadavg_after']}"
    )
    write_results(results, args.output)


if __name__ == "__main__":
    main()
