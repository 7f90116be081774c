"""SOAP-BPNN benchmark: training throughput, peak memory, accuracy and inference.

    python bench/soap_bpnn.py [--epochs N] [--dataset water|ethanol] [--data PATH]

1. Trains SOAP-BPNN through the CLI (``atomtrain train options.yaml``) in a
   temporary working folder (or ``--workdir``), under ``/usr/bin/time -v`` for
   the peak resident memory of the training process.
2. Reads ``outputs/*/*/train.csv``: seconds per epoch from the differences of
   the cumulative ``time_s`` column (the first epoch is left out: it may carry
   first-call costs; ``time_s`` itself starts after the neighbour lists and
   the baseline fit), training structures/s
   and atoms/s, and the final validation energy and force MAE.
3. Times the exported ``model.pt`` through ``metatomic_ase.MetatomicCalculator``
   (energy + forces): a few warm-up calls, then ``--repeats`` calls of
   ``get_forces`` with the positions rattled before each one, on the first
   structure of the data set and, for periodic data, on its 2x2x2 supercell.

Prints a table and writes ``bench/results/soap_bpnn_<dataset>.json``.

Data sets: ``water`` (default) is ``<repo>/../shared/data/water-dpmd/
water_train.xyz`` (320 periodic frames of 192 atoms, energy in eV);
``ethanol`` is ``tests/resources/ethanol_reduced_100.xyz`` (100 molecules of
9 atoms, energy in kcal/mol). ``--data`` replaces the file of the chosen data
set (keeping its unit unless ``--unit`` is given).

Notes: the epoch time includes the validation pass (10 % of the data, energy
and forces without parameter gradients), so structures/s counts training
structures per second of epoch wall time. Timings depend on the CPU threads
torch may use and on what else runs on the machine: both are recorded.
"""

import argparse
import csv
import datetime
import glob
import json
import os
import platform
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

import ase.io
import numpy as np
import yaml


ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS = os.path.join(ROOT, "bench", "results")
DATASETS = {
    "water": {
        "path": os.path.join(
            ROOT, "..", "shared", "data", "water-dpmd", "water_train.xyz"
        ),
        "unit": "eV",
    },
    "ethanol": {
        "path": os.path.join(ROOT, "tests", "resources", "ethanol_reduced_100.xyz"),
        "unit": "kcal/mol",
    },
}
VALIDATION_FRACTION = 0.1


def write_options(
    folder,
    path,
    unit,
    epochs,
    batch_size,
    arch="soap_bpnn",
    validation=VALIDATION_FRACTION,
    extra=None,
    model=None,
):
    """Write ``options.yaml`` for ``atomtrain train``: ``arch`` with its default
    hypers (updated by ``model``) on ``path``; ``validation`` is a fraction of it
    or another file (same unit and keys); ``extra`` updates the top-level
    options."""
    targets = {"energy": {"key": "energy", "unit": unit, "forces": {"key": "forces"}}}
    if isinstance(validation, str):
        validation = {"systems": validation, "targets": targets}
    options = {
        "architecture": {
            "name": arch,
            "training": {"num_epochs": epochs, "batch_size": batch_size},
            **({"model": model} if model else {}),
        },
        "training_set": {"systems": path, "targets": targets},
        "validation_set": validation,
        "seed": 0,
        **(extra or {}),
    }
    with open(os.path.join(folder, "options.yaml"), "w") as file:
        yaml.safe_dump(options, file, sort_keys=False)
    return options


def train(folder, command=None, log=None):
    """Run ``atomtrain train options.yaml`` (or ``command``) in ``folder``;
    return the peak RSS in MiB, where it comes from, and the wall time in s.
    ``log``: a file name in ``folder`` for the command's stdout and stderr."""
    if command is None:
        atomtrain = shutil.which("atomtrain") or os.path.join(
            os.path.dirname(sys.executable), "atomtrain"
        )
        command = [atomtrain, "train", "options.yaml"]
    name = " ".join(os.path.basename(part) for part in command[:2])
    time_log = os.path.join(folder, "time-v.txt")
    gnu_time = "/usr/bin/time" if os.access("/usr/bin/time", os.X_OK) else None
    if gnu_time:
        command = [gnu_time, "-v", "-o", time_log, *command]
    output = open(os.path.join(folder, log), "w") if log else None
    started = time.perf_counter()
    try:
        process = subprocess.run(
            command,
            cwd=folder,
            stdout=output,
            stderr=subprocess.STDOUT if output else None,
        )
    finally:
        if output is not None:
            output.close()
    wall_s = time.perf_counter() - started
    if process.returncode != 0:
        where = f"; see {os.path.join(folder, log)}" if log else ""
        sys.exit(f"{name} failed with exit status {process.returncode}{where}")
    # the child with the largest peak RSS so far (only a fallback: with several
    # runs in one process it is the largest of them)
    peak_mib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    source = "getrusage(RUSAGE_CHILDREN)"
    if gnu_time and os.path.exists(time_log):
        with open(time_log) as file:
            match = re.search(
                r"Maximum resident set size \(kbytes\): (\d+)", file.read()
            )
        if match:
            peak_mib, source = int(match.group(1)) / 1024, "/usr/bin/time -v"
    return peak_mib, source, wall_s


def read_run(folder):
    (run,) = glob.glob(os.path.join(folder, "outputs", "*", "*", "train.csv"))
    with open(run, newline="") as file:
        rows = list(csv.DictReader(file))
    counts = None
    log = os.path.join(os.path.dirname(run), "train.log")
    if os.path.exists(log):
        with open(log) as file:
            match = re.search(r"(\d+) training, (\d+) validation", file.read())
        if match:
            counts = int(match.group(1)), int(match.group(2))
    return rows, counts


def column(rows, prefix):
    """Final value and full name of the first column starting with ``prefix``."""
    for name in rows[-1]:
        if name.startswith(prefix):
            return float(rows[-1][name]), name
    return None, None


def epoch_times(rows):
    epochs = [int(r["epoch"]) for r in rows]
    cumulative = [float(r["time_s"]) for r in rows]
    if len(rows) < 2:
        return cumulative[0] / max(1, epochs[0]), None, cumulative[0]
    # rows may be every log_interval epochs: divide by the epochs between rows
    per_epoch = [
        (cumulative[i] - cumulative[i - 1]) / (epochs[i] - epochs[i - 1])
        for i in range(1, len(rows))
    ]
    mean = (cumulative[-1] - cumulative[0]) / (epochs[-1] - epochs[0])
    return mean, statistics.median(per_epoch), cumulative[0]


def time_inference(model, extensions, atoms, repeats, warmup, skin):
    """Median (and min) ms per call of energy + forces on ``atoms``."""
    from metatomic_ase import MetatomicCalculator

    atoms = atoms.copy()
    kwargs = {"device": "cpu"}
    if extensions:
        kwargs["extensions_directory"] = extensions
    if skin is not None:
        kwargs["neighbor_skin"] = skin
    atoms.calc = MetatomicCalculator(model, **kwargs)
    for _ in range(warmup):
        atoms.rattle(stdev=1e-3, seed=1000 + _)
        atoms.get_forces()
    times = []
    for i in range(repeats):
        # fresh positions each call, so that ASE's result cache can't answer
        atoms.rattle(stdev=1e-3, seed=i)
        start = time.perf_counter()
        forces = atoms.get_forces()
        times.append(time.perf_counter() - start)
        assert forces.shape == (len(atoms), 3) and np.isfinite(forces).all()
    return 1000 * statistics.median(times), 1000 * min(times)


def loadavg():
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def environment(load_before, **extra) -> dict:
    """Where and when a benchmark ran: processor, versions, threads, the load
    average before and after, and glibc malloc settings inherited from the
    environment (they change timings); ``extra`` adds entries."""
    import torch

    return {
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "machine": platform.machine(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "loadavg_before": load_before,
        "loadavg_after": loadavg(),
        "malloc_env": {k: v for k, v in os.environ.items() if "MALLOC" in k},
        **extra,
    }


def write_results(results: dict, path: str) -> None:
    """Write a benchmark's figures as JSON (folders made as needed)."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as file:
        json.dump(results, file, indent=2)
    print(f"bench: results written to {path}")


def xyz_frames(path: str) -> list[list[str]]:
    """The frames of an extended XYZ file as lists of text lines (keys and
    precision unchanged), to split a file without rewriting its numbers."""
    with open(path) as file:
        lines = file.read().splitlines(keepends=True)
    frames, start = [], 0
    while start < len(lines) and lines[start].strip():
        n_atoms = int(lines[start])
        frames.append(lines[start : start + n_atoms + 2])
        start += n_atoms + 2
    return frames


def cpu_model():
    """The processor's name from /proc/cpuinfo (``platform.processor()`` else)."""
    try:
        with open("/proc/cpuinfo") as file:
            for line in file:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def print_table(results):
    rows = [
        ("data set", f"{results['dataset']} ({results['data']})"),
        ("epochs", results["epochs"]),
        ("train / val structures", f"{results['n_train']} / {results['n_val']}"),
        ("atoms per structure (mean)", f"{results['atoms_per_structure']:.1f}"),
        ("torch CPU threads", results["torch_threads"]),
        ("training wall time (s)", f"{results['training_wall_s']:.1f}"),
        ("first epoch (s)", f"{results['first_epoch_s']:.2f}"),
        ("s/epoch (mean, epochs 2..N)", f"{results['seconds_per_epoch']:.2f}"),
    ]
    if results["seconds_per_epoch_median"] is not None:
        rows.append(("s/epoch (median)", f"{results['seconds_per_epoch_median']:.2f}"))
    rows += [
        ("training structures/s", f"{results['structures_per_s']:.2f}"),
        ("training atoms/s", f"{results['atoms_per_s']:.0f}"),
        (
            f"peak RSS training (MiB) [{results['peak_rss_source']}]",
            f"{results['peak_rss_mib']:.0f}",
        ),
        (
            results["val_energy_mae_column"],
            f"{results['val_energy_mae_mev_per_atom']:.3f}",
        ),
        (
            results["val_forces_mae_column"],
            f"{results['val_forces_mae_mev_per_A']:.2f}",
        ),
    ]
    for entry in results["inference"]:
        n = entry["n_atoms"]
        rows.append(
            (
                f"inference {n} atoms: ms/call (median)",
                f"{entry['ms_per_call_median']:.1f}",
            )
        )
        rows.append(
            (
                f"inference {n} atoms: ms/atom (median)",
                f"{entry['ms_per_atom_median']:.4f}",
            )
        )
    width = max(len(str(k)) for k, _ in rows)
    print()
    print(f"{'SOAP-BPNN benchmark':<{width}}  value")
    print("-" * (width + 20))
    for key, value in rows:
        print(f"{key:<{width}}  {value}")


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--epochs", type=int, default=3, help="default: 3")
    parser.add_argument("--dataset", choices=sorted(DATASETS), default="water")
    parser.add_argument("--data", help="extended XYZ file replacing the data set's")
    parser.add_argument("--unit", help="energy unit of --data (default: data set's)")
    parser.add_argument("--batch-size", type=int, default=8, help="default: 8")
    parser.add_argument(
        "--repeats", type=int, default=30, help="timed inference calls (default: 30)"
    )
    parser.add_argument("--warmup", type=int, default=5, help="default: 5")
    parser.add_argument(
        "--neighbor-skin",
        type=float,
        help="Verlet skin (Å) of MetatomicCalculator (default: its own, 2.0)",
    )
    parser.add_argument(
        "--workdir", help="run in this folder and keep it (default: a temporary one)"
    )
    parser.add_argument(
        "--output", help="JSON file (default: bench/results/soap_bpnn_<dataset>.json)"
    )
    args = parser.parse_args()

    dataset = DATASETS[args.dataset]
    path = os.path.abspath(args.data or dataset["path"])
    unit = args.unit or dataset["unit"]
    if not os.path.exists(path):
        sys.exit(f"data file not found: {path}")
    frames = ase.io.read(path, ":")
    output = args.output or os.path.join(RESULTS, f"soap_bpnn_{args.dataset}.json")

    import torch

    if args.workdir:
        os.makedirs(args.workdir, exist_ok=True)
        folder, cleanup = os.path.abspath(args.workdir), None
    else:
        cleanup = tempfile.TemporaryDirectory(prefix="bench-soap-bpnn-")
        folder = cleanup.name
    print(f"bench: working folder {folder}", flush=True)
    load_before = loadavg()
    try:
        write_options(folder, path, unit, args.epochs, args.batch_size)
        peak_mib, peak_source, wall_s = train(folder)
        rows, counts = read_run(folder)
        if counts is None:
            n_val = round(VALIDATION_FRACTION * len(frames))
            counts = len(frames) - n_val, n_val
        n_train, n_val = counts
        mean_s, median_s, first_s = epoch_times(rows)
        atoms_per_structure = float(np.mean([len(f) for f in frames]))
        energy_mae, energy_column = column(rows, "val energy MAE")
        forces_mae, forces_column = column(rows, "val forces MAE")
        results = {
            "dataset": args.dataset,
            "data": path,
            "energy_unit": unit,
            "epochs": args.epochs,
            "epochs_logged": int(rows[-1]["epoch"]),
            "batch_size": args.batch_size,
            "n_train": n_train,
            "n_val": n_val,
            "atoms_per_structure": atoms_per_structure,
            "training_wall_s": wall_s,
            "first_epoch_s": first_s,
            "seconds_per_epoch": mean_s,
            "seconds_per_epoch_median": median_s,
            "structures_per_s": n_train / mean_s,
            "atoms_per_s": n_train * atoms_per_structure / mean_s,
            "peak_rss_mib": peak_mib,
            "peak_rss_source": peak_source,
            "val_energy_mae_mev_per_atom": energy_mae,
            "val_energy_mae_column": energy_column,
            "val_forces_mae_mev_per_A": forces_mae,
            "val_forces_mae_column": forces_column,
            "final_row": rows[-1],
        }

        model = os.path.join(folder, "model.pt")
        extensions = os.path.join(folder, "extensions")
        has_extensions = os.path.isdir(extensions) and os.listdir(extensions)
        extensions = extensions if has_extensions else None
        cells = [frames[0]]
        if frames[0].pbc.all():
            cells.append(frames[0].repeat((2, 2, 2)))
        results["inference"] = []
        for atoms in cells:
            median_ms, min_ms = time_inference(
                model, extensions, atoms, args.repeats, args.warmup, args.neighbor_skin
            )
            results["inference"].append(
                {
                    "n_atoms": len(atoms),
                    "periodic": bool(atoms.pbc.all()),
                    "ms_per_call_median": median_ms,
                    "ms_per_call_min": min_ms,
                    "ms_per_atom_median": median_ms / len(atoms),
                    "ms_per_atom_min": min_ms / len(atoms),
                    "repeats": args.repeats,
                    "warmup": args.warmup,
                }
            )
        results["inference_peak_rss_mib_benchmark_process"] = (
            resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        )
    finally:
        if cleanup is not None:
            cleanup.cleanup()

    results["environment"] = environment(load_before, neighbor_skin=args.neighbor_skin)
    results["torch_threads"] = torch.get_num_threads()
    print_table(results)
    print(f"load average before / after: {load_before} / {loadavg()}")
    write_results(results, output)


if __name__ == "__main__":
    main()
