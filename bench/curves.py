"""Accuracy against wall time, per architecture, on the same water split.

    python bench/curves.py [--archs gnn soap_bpnn] [--epochs gnn=20 soap_bpnn=20]
        [--time-limit 480] [--threads 2] [--parallel] [--device cpu|cuda]
        [--plot docs/img/water_curves.png]

Each architecture is trained through the command line (``atomtrain train``) on
``../shared/data/water-dpmd/water_train.xyz`` (288 training and 32 validation
structures of 192 atoms, split with seed 0, batch 8, float32) with its default
hypers. ``--time-limit`` sends SIGTERM after that many seconds: training stops
cleanly after its current step, and the epochs logged so far are the curve.
``--parallel`` runs the architectures at the same time, each pinned to its own
``--threads`` CPU cores (so both see the same machine, with no contention).

Prints per architecture seconds/epoch, structures/s, peak RSS, and validation
energy and force MAE at the common wall time; writes the curves as JSON under
``bench/results/`` and, with ``--plot``, a PNG of MAE against wall time.
"""

import argparse
import csv
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time

import yaml


ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WATER = os.path.join(ROOT, "..", "shared", "data", "water-dpmd", "water_train.xyz")
RESULTS = os.path.join(ROOT, "bench", "results")
LAUNCH = "import sys; from atomtrain.cli import main; sys.exit(main())"


def options(run: dict, data: str, device: str) -> dict:
    return {
        "architecture": {
            "name": run["arch"],
            "model": run.get("model", {}),
            "training": {
                "num_epochs": run["epochs"],
                "batch_size": 8,
                **run.get("training", {}),
            },
        },
        "training_set": {
            "systems": data,
            "targets": {
                "energy": {"key": "energy", "unit": "eV", "forces": {"key": "forces"}}
            },
        },
        "validation_set": 0.1,
        "seed": 0,
        "device": device,
    }


def start(arch: str, folder: str, threads: int, cores: list[int] | None):
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), PYTHONUNBUFFERED="1")

    def pin():
        if cores is not None:
            os.sched_setaffinity(0, cores)

    log = open(os.path.join(folder, "stdout.txt"), "w")
    return subprocess.Popen(
        [sys.executable, "-c", LAUNCH, "train", "options.yaml", "--output-dir", "run"],
        cwd=folder,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        preexec_fn=pin,
    )


def curve(folder: str) -> list[dict]:
    with open(os.path.join(folder, "run", "train.csv"), newline="") as file:
        rows = list(csv.DictReader(file))

    def value(row, prefix):
        return next(float(v) for k, v in row.items() if k.startswith(prefix))

    return [
        {
            "epoch": int(row["epoch"]),
            "time_s": float(row["time_s"]),
            "val_energy_mae": value(row, "val energy MAE"),
            "val_forces_mae": value(row, "val forces MAE"),
        }
        for row in rows
    ]


def at_time(points: list[dict], seconds: float, key: str) -> float:
    """The validation metric of the last epoch finished by ``seconds``."""
    done = [p for p in points if p["time_s"] <= seconds]
    return done[-1][key] if done else float("nan")


def plot(results: dict, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, 2, figsize=(10, 4))
    for arch, result in results["architectures"].items():
        times = [p["time_s"] / 60 for p in result["curve"]]
        for axis, key in zip(axes, ("val_energy_mae", "val_forces_mae")):
            axis.plot(times, [p[key] for p in result["curve"]], "o-", label=arch)
    axes[0].set_ylabel("validation energy MAE (meV/atom)")
    axes[1].set_ylabel("validation force MAE (meV/Å)")
    for axis in axes:
        axis.set_xlabel("wall time (min)")
        axis.set_yscale("log")
        axis.grid(True, which="both", alpha=0.3)
        axis.legend()
    figure.suptitle(
        f"water (288 train / 32 val, batch 8), {results['device']}, "
        f"{results['threads']} thread{'s' if results['threads'] != 1 else ''} per run"
    )
    figure.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    figure.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--archs", nargs="+", default=["gnn", "soap_bpnn"])
    parser.add_argument("--epochs", nargs="*", default=[], help="ARCH=N (default 30)")
    parser.add_argument(
        "--variants",
        help="YAML file {NAME: {arch, epochs, model: {...}, training: {...}}} of "
        "runs to compare instead of --archs with default hypers",
    )
    parser.add_argument("--time-limit", type=float, default=0, help="seconds")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--parallel", action="store_true")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--data", default=WATER)
    parser.add_argument("--plot", help="PNG of the curves")
    parser.add_argument("--json", default=os.path.join(RESULTS, "curves.json"))
    args = parser.parse_args()
    args.data = os.path.abspath(args.data)
    epochs = {arch: 30 for arch in args.archs}
    epochs.update({k: int(v) for k, v in (e.split("=") for e in args.epochs)})
    runs = {arch: {"arch": arch, "epochs": epochs[arch]} for arch in args.archs}
    if args.variants:
        with open(args.variants) as file:
            runs = yaml.safe_load(file)
        args.archs = list(runs)

    workdir = tempfile.mkdtemp(prefix="atomtrain-curves-")
    folders, processes = {}, {}
    cores = sorted(os.sched_getaffinity(0))
    for arch in args.archs:
        folder = os.path.join(workdir, arch)
        os.makedirs(folder)
        with open(os.path.join(folder, "options.yaml"), "w") as file:
            yaml.safe_dump(options(runs[arch], args.data, args.device), file)
        folders[arch] = folder
    order = [args.archs] if args.parallel else [[a] for a in args.archs]
    usage, stopped = {}, set()
    for group in order:
        for index, arch in enumerate(group):
            mine = cores[index * args.threads : (index + 1) * args.threads]
            pinned = mine if args.parallel and len(mine) == args.threads else None
            processes[arch] = (
                start(arch, folders[arch], args.threads, pinned),
                time.time(),
            )
        while any(processes[a][0].poll() is None for a in group):
            for arch in group:
                process, started = processes[arch]
                if (
                    args.time_limit
                    and arch not in stopped
                    and process.poll() is None
                    and time.time() - started > args.time_limit
                ):  # once: a second SIGTERM would kill it mid-checkpoint
                    process.send_signal(signal.SIGTERM)
                    stopped.add(arch)
            time.sleep(1)
        for arch in group:
            usage[arch] = processes[arch][0].returncode
            stopped.discard(arch)

    results = {
        "device": args.device,
        "threads": args.threads,
        "parallel": args.parallel,
        "data": os.path.abspath(args.data),
        "architectures": {},
    }
    for arch in args.archs:
        points = curve(folders[arch])
        times = [p["time_s"] for p in points]
        epoch_s = (times[-1] - times[0]) / max(1, len(times) - 1)
        log = open(os.path.join(folders[arch], "stdout.txt")).read()
        found = re.search(r"(\d+) training, (\d+) validation", log)
        n_train = int(found.group(1)) if found else 0
        results["architectures"][arch] = {
            "exit_status": usage[arch],
            "epochs": len(points),
            "seconds_per_epoch": epoch_s,
            "structures_per_s": n_train / epoch_s,
            "parameters": next(
                (line.split()[2] for line in log.splitlines() if "parameters" in line),
                "?",
            ),
            "curve": points,
        }
    common = min(r["curve"][-1]["time_s"] for r in results["architectures"].values())
    results["common_time_s"] = common
    header = f"{'':26}" + "".join(f"{a:>14}" for a in args.archs)
    print(header)
    rows = [
        ("parameters", lambda r: r["parameters"]),
        ("epochs done", lambda r: r["epochs"]),
        ("s/epoch", lambda r: f"{r['seconds_per_epoch']:.1f}"),
        ("structures/s", lambda r: f"{r['structures_per_s']:.1f}"),
        (
            f"E MAE @ {common:.0f} s (meV/at)",
            lambda r: f"{at_time(r['curve'], common, 'val_energy_mae'):.2f}",
        ),
        (
            f"F MAE @ {common:.0f} s (meV/Å)",
            lambda r: f"{at_time(r['curve'], common, 'val_forces_mae'):.1f}",
        ),
        ("final E MAE (meV/at)", lambda r: f"{r['curve'][-1]['val_energy_mae']:.2f}"),
        ("final F MAE (meV/Å)", lambda r: f"{r['curve'][-1]['val_forces_mae']:.1f}"),
    ]
    for name, get in rows:
        cells = "".join(f"{get(results['architectures'][a]):>14}" for a in args.archs)
        print(f"{name:26}{cells}")
    os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
    with open(args.json, "w") as file:
        json.dump(results, file, indent=1)
    if args.plot:
        plot(results, args.plot)
    print(f"curves: {args.json}; runs in {workdir}")


if __name__ == "__main__":
    main()
