"""atomtrain's experimental.mace against MACE's own ``mace_run_train``.

    python bench/mace_compare.py [--epochs 3] [--threads 1] [--only atomtrain|mace]

Both train the same MACE (same blocks from ``mace-torch``, same hypers) on the
same water split, float32, on the CPU of this machine, one after the other:

- data: ``<repo>/../shared/data/water-dpmd/water_train.xyz`` (320 periodic
  frames of 64 H2O, eV); frames 0..287 train, 288..319 validate, written as
  ``train.xyz`` and ``valid.xyz`` into the working folder (under /tmp);
- model: ``--hidden-irreps`` (32x0e + 32x1o), ``--max-ell`` (2), correlation 3,
  r_max 5 Å, 2 interactions, MACE's other defaults (8 Bessel functions, radial
  MLP [64, 64, 64], 16x0e read-out MLP), average number of neighbours computed
  from the training set;
- training: batch 8, learning rate 0.01 held constant, gradients clipped at 10,
  loss = per-atom energy MSE + 100 x force MSE (MACE's ``weighted`` loss;
  atomtrain divides both terms by the same scale, which leaves the optimum and
  Adam's steps unchanged), E0s / composition baseline by least squares, and
  energy scale = RMS of the forces (``rms_forces_scaling``).

Remaining differences: MACE uses Adam with AMSGrad and L2 weight decay 5e-7,
atomtrain AdamW (decoupled weight decay 5e-7, no AMSGrad); the shuffling differs;
MACE evaluates an initial validation pass and, after training, the whole
training and validation sets.

Reported per run: seconds per epoch (mean of the epochs after the first, each
including its validation pass: ``time_s`` of atomtrain's ``train.csv``, the log
timestamps of MACE's per-epoch validation lines), training structures/s and
atoms/s, the wall time of the whole command, its peak RSS (``/usr/bin/time -v``),
and the validation energy and force MAE after the last epoch.

Timings depend on the threads (``--threads``, default 1, set through
OMP_NUM_THREADS and MKL_NUM_THREADS) and on what else runs on the machine: the
load average is recorded. Results go to ``bench/results/mace_compare.json``.
"""

import argparse
import csv
import datetime
import glob
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time

import yaml
from soap_bpnn import write_results, xyz_frames


ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS = os.path.join(ROOT, "bench", "results")
WATER = os.path.join(ROOT, "..", "shared", "data", "water-dpmd", "water_train.xyz")
N_TRAIN, N_TOTAL = 288, 320
LOSS_FORCE_WEIGHT = 100.0  # MACE's default --forces_weight (energy weight 1)
WEIGHT_DECAY = 5e-7  # MACE's default


def split_frames(path: str, folder: str) -> tuple[str, str, float]:
    """Copy frames 0..287 and 288..319 of an extended XYZ file as text (keys and
    precision unchanged); returns the two paths and the mean number of atoms."""
    frames = xyz_frames(path)
    if len(frames) < N_TOTAL:
        sys.exit(f"{path} has {len(frames)} frames, {N_TOTAL} expected")
    train, valid = os.path.join(folder, "train.xyz"), os.path.join(folder, "valid.xyz")
    for name, chunk in ((train, frames[:N_TRAIN]), (valid, frames[N_TRAIN:N_TOTAL])):
        with open(name, "w") as file:
            file.writelines(line for frame in chunk for line in frame)
    mean_atoms = sum(len(f) - 2 for f in frames[:N_TRAIN]) / N_TRAIN
    return train, valid, mean_atoms


def timed(command: list, folder: str, env: dict, log_name: str) -> dict:
    """Run ``command`` in ``folder`` under ``/usr/bin/time -v``: wall time, peak
    RSS (MiB) and the exit status; stdout and stderr go to ``log_name``."""
    program = os.path.basename(command[0])
    time_log = os.path.join(folder, f"{log_name}.time-v.txt")
    gnu_time = "/usr/bin/time" if os.access("/usr/bin/time", os.X_OK) else None
    if gnu_time:
        command = [gnu_time, "-v", "-o", time_log, *command]
    started = time.perf_counter()
    with open(os.path.join(folder, f"{log_name}.log"), "w") as log:
        process = subprocess.run(command, cwd=folder, env=env, stdout=log, stderr=log)
    wall = time.perf_counter() - started
    peak = None
    if gnu_time and os.path.exists(time_log):
        with open(time_log) as file:
            match = re.search(
                r"Maximum resident set size \(kbytes\): (\d+)", file.read()
            )
        if match:
            peak = int(match.group(1)) / 1024
    if process.returncode != 0:
        sys.exit(
            f"{program} failed with exit status "
            f"{process.returncode}; see {os.path.join(folder, log_name + '.log')}"
        )
    return {"wall_s": wall, "peak_rss_mib": peak}


def per_epoch(times: list) -> tuple[float, float]:
    """Mean seconds per epoch after the first (all epochs if only one), and the
    first epoch's time, from cumulative end-of-epoch times (first = 0 start)."""
    durations = [b - a for a, b in zip(times, times[1:])]
    later = durations[1:] or durations
    return sum(later) / len(later), durations[0]


# --------------------------------------------------------------------- atomtrain
def run_atomtrain(args, folder, train, valid, env) -> dict:
    folder = os.path.join(folder, "atomtrain")
    os.makedirs(folder, exist_ok=True)
    targets = {"energy": {"key": "energy", "unit": "eV", "forces": {"key": "forces"}}}
    options = {
        "architecture": {
            "name": "experimental.mace",
            "model": {
                "hidden_irreps": args.hidden_irreps,
                "max_ell": args.max_ell,
                "correlation": args.correlation,
                "r_max": args.r_max,
                "num_interactions": args.num_interactions,
            },
            "training": {
                "num_epochs": args.epochs,
                "batch_size": args.batch_size,
                "learning_rate": args.lr,
                "scheduler": "constant",
                "warmup_epochs": 0.0,
                "weight_decay": WEIGHT_DECAY,
                "grad_clip_norm": 10.0,
                "checkpoint_interval": 1000,
            },
        },
        "training_set": {"systems": train, "targets": targets},
        "validation_set": {"systems": valid, "targets": targets},
        "test_set": 0.0,
        "loss": {"energy": {"weight": 1.0, "forces": {"weight": LOSS_FORCE_WEIGHT}}},
        "base_precision": 32,
        "device": "cpu",
        "seed": args.seed,
    }
    with open(os.path.join(folder, "options.yaml"), "w") as file:
        yaml.safe_dump(options, file, sort_keys=False)
    atomtrain = shutil.which("atomtrain") or os.path.join(
        os.path.dirname(sys.executable), "atomtrain"
    )
    result = timed([atomtrain, "train", "options.yaml"], folder, env, "atomtrain")
    (path,) = glob.glob(os.path.join(folder, "outputs", "*", "*", "train.csv"))
    with open(path, newline="") as file:
        rows = list(csv.DictReader(file))
    # time_s is cumulative from the start of the loop (neighbour lists and the
    # baseline fit come before it and are in the first epoch)
    seconds, first = per_epoch([0.0] + [float(r["time_s"]) for r in rows])
    last = rows[-1]
    result.update(
        seconds_per_epoch=seconds,
        first_epoch_s=first,
        epochs=len(rows),
        val_energy_mae=float(last["val energy MAE (meV/atom)"]),
        val_forces_mae=float(last["val forces MAE (meV/Å)"]),
        folder=folder,
    )
    return result


# -------------------------------------------------------------------------- MACE
_MACE_LINE = re.compile(
    r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}) \S+: (Initial|Epoch \d+): head: "
    r"\S+, loss=\s*\S+, MAE_E_per_atom=\s*(\S+) meV, MAE_F=\s*(\S+) meV / A"
)


def run_mace(args, folder, train, valid, env) -> dict:
    folder = os.path.join(folder, "mace")
    os.makedirs(folder, exist_ok=True)
    mace = shutil.which("mace_run_train") or os.path.join(
        os.path.dirname(sys.executable), "mace_run_train"
    )
    command = [
        mace,
        "--name=water",
        f"--work_dir={folder}",
        f"--train_file={train}",
        f"--valid_file={valid}",
        "--energy_key=energy",
        "--forces_key=forces",
        "--E0s=average",
        "--model=MACE",
        f"--hidden_irreps={args.hidden_irreps}",
        f"--max_ell={args.max_ell}",
        f"--correlation={args.correlation}",
        f"--r_max={args.r_max}",
        f"--num_interactions={args.num_interactions}",
        f"--batch_size={args.batch_size}",
        f"--valid_batch_size={args.batch_size}",
        f"--max_num_epochs={args.epochs}",
        f"--lr={args.lr}",
        f"--weight_decay={WEIGHT_DECAY}",
        f"--forces_weight={LOSS_FORCE_WEIGHT}",
        "--energy_weight=1.0",
        "--clip_grad=10.0",
        "--error_table=PerAtomMAE",
        "--eval_interval=1",
        "--default_dtype=float32",
        "--device=cpu",
        f"--seed={args.seed}",
    ]
    result = timed(command, folder, env, "mace")
    result.update(read_mace_log(folder), folder=folder)
    return result


def read_mace_log(folder: str) -> dict:
    """Epoch times and the last validation MAE from MACE's log (each
    per-epoch validation line is time-stamped to the millisecond)."""
    logs = glob.glob(os.path.join(folder, "logs", "*.log"))
    (log,) = [path for path in logs if not path.endswith("_debug.log")]
    stamps, maes = [], []
    with open(log) as file:
        for line in file:
            match = _MACE_LINE.match(line)
            if match:
                stamp = datetime.datetime.strptime(
                    match.group(1), "%Y-%m-%d %H:%M:%S.%f"
                )
                stamps.append(stamp.timestamp())
                maes.append((float(match.group(3)), float(match.group(4))))
    if len(stamps) < 2:
        sys.exit(f"no per-epoch validation lines found in {log}")
    # the first line is the initial validation, before any training step
    seconds, first = per_epoch([s - stamps[0] for s in stamps])
    return {
        "seconds_per_epoch": seconds,
        "first_epoch_s": first,
        "epochs": len(stamps) - 1,
        "val_energy_mae": maes[-1][0],
        "val_forces_mae": maes[-1][1],
    }


# ------------------------------------------------------------------------- table
def print_table(results: dict) -> None:
    runs = [name for name in ("atomtrain", "mace") if name in results["runs"]]
    labels = {"atomtrain": "atomtrain experimental.mace", "mace": "mace_run_train"}
    n_train, atoms = results["n_train"], results["atoms_per_structure"]
    rows = [
        ("epochs", lambda r: f"{r['epochs']}"),
        (
            "s/epoch (mean, epochs 2..N, incl. validation)",
            lambda r: f"{r['seconds_per_epoch']:.1f}",
        ),
        ("first epoch (s)", lambda r: f"{r['first_epoch_s']:.1f}"),
        (
            "training structures/s",
            lambda r: f"{n_train / r['seconds_per_epoch']:.2f}",
        ),
        (
            "training atoms/s",
            lambda r: f"{n_train * atoms / r['seconds_per_epoch']:.0f}",
        ),
        ("whole command wall time (s)", lambda r: f"{r['wall_s']:.0f}"),
        (
            "peak RSS (MiB, /usr/bin/time -v)",
            lambda r: (
                "n/a" if r["peak_rss_mib"] is None else f"{r['peak_rss_mib']:.0f}"
            ),
        ),
        (
            "val energy MAE (meV/atom), last epoch",
            lambda r: f"{r['val_energy_mae']:.2f}",
        ),
        (
            "val forces MAE (meV/Å), last epoch",
            lambda r: f"{r['val_forces_mae']:.1f}",
        ),
    ]
    width = max(len(label) for label, _ in rows)
    columns = [labels[name] for name in runs]
    print()
    print(
        f"water {n_train} train / {results['n_val']} val structures, "
        f"{results['model']}, batch {results['batch_size']}, float32, "
        f"{results['threads']} thread(s), load {results['load_before']} -> "
        f"{results['load_after']}"
    )
    print(f"{'':<{width}}  " + "  ".join(f"{c:>28}" for c in columns))
    for label, value in rows:
        cells = [value(results["runs"][name]) for name in runs]
        print(f"{label:<{width}}  " + "  ".join(f"{c:>28}" for c in cells))


def loadavg():
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--epochs", type=int, default=3, help="default: 3")
    parser.add_argument("--batch-size", type=int, default=8, help="default: 8")
    parser.add_argument("--lr", type=float, default=0.01, help="default: 0.01")
    parser.add_argument("--hidden-irreps", default="32x0e + 32x1o")
    parser.add_argument("--max-ell", type=int, default=2, help="default: 2")
    parser.add_argument("--correlation", type=int, default=3, help="default: 3")
    parser.add_argument("--r-max", type=float, default=5.0, help="default: 5.0")
    parser.add_argument("--num-interactions", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1, help="default: 1")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data", default=WATER, help="default: the water set")
    parser.add_argument("--only", choices=["atomtrain", "mace"])
    parser.add_argument(
        "--workdir", help="keep everything here (default: a temporary folder in /tmp)"
    )
    parser.add_argument("--output", default=os.path.join(RESULTS, "mace_compare.json"))
    args = parser.parse_args()

    if args.workdir:
        os.makedirs(args.workdir, exist_ok=True)
        folder, cleanup = os.path.abspath(args.workdir), None
    else:
        cleanup = tempfile.TemporaryDirectory(prefix="mace-compare-", dir="/tmp")
        folder = cleanup.name
    print(f"bench: working folder {folder}", flush=True)
    train, valid, atoms = split_frames(os.path.abspath(args.data), folder)
    env = dict(os.environ)
    env.update(
        OMP_NUM_THREADS=str(args.threads),
        MKL_NUM_THREADS=str(args.threads),
        PYTHONUNBUFFERED="1",
    )
    results = {
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "host": platform.node(),
        "cpu_count": os.cpu_count(),
        "threads": args.threads,
        "data": os.path.abspath(args.data),
        "n_train": N_TRAIN,
        "n_val": N_TOTAL - N_TRAIN,
        "atoms_per_structure": atoms,
        "batch_size": args.batch_size,
        "model": (
            f"{args.hidden_irreps}, max_ell {args.max_ell}, correlation "
            f"{args.correlation}, r_max {args.r_max}, {args.num_interactions} "
            "interactions"
        ),
        "load_before": loadavg(),
        "runs": {},
    }
    runners = {"atomtrain": run_atomtrain, "mace": run_mace}
    try:
        for name, runner in runners.items():
            if args.only in (None, name):
                print(f"bench: training with {name} ...", flush=True)
                results["runs"][name] = runner(args, folder, train, valid, env)
    finally:
        results["load_after"] = loadavg()
        if cleanup is not None:
            cleanup.cleanup()
    print_table(results)
    write_results(results, args.output)


if __name__ == "__main__":
    main()
