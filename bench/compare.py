"""atomtrain's SOAP-BPNN against metatrain's, on the same water split, in one run.

    python bench/compare.py [--epochs 3] [--threshold 150] [--metatrain 2026.4.1]
        [--repeats 8] [--warmup 3] [--workdir DIR] [--setup-only] [--with-mace]

1. Makes (once) a virtual environment ``bench/.venvs/metatrain-<version>/`` with
   ``pip install torch==2.13.0 metatrain[soap-bpnn]==<version>`` and checks that
   its torch is the CPU build and the version asked for (``--setup-only`` stops
   there).
2. Splits ``<repo>/../shared/data/water-dpmd/water_train.xyz`` (320 periodic
   frames of 64 H2O, eV) exactly as ``atomtrain train`` does with
   ``validation_set: 0.1`` and ``seed: 0`` (``torch.randperm(320)`` seeded with
   0: the first 32 validate, the other 288 train) and writes the frames,
   unchanged text, as ``train.xyz`` and ``val.xyz``: both tools get these two
   files (validation set as a file, no test set).
3. Trains atomtrain's ``soap_bpnn`` (its defaults, 2 pseudo species) and
   metatrain's ``soap_bpnn`` (descriptor and network matched, see below) one
   after the other, float32, batch 8, ``--epochs`` epochs, seed 0, on the CPU
   with torch's default thread count, each under ``/usr/bin/time -v`` (peak
   RSS); metatrain logs the validation MAE every epoch (``log_interval: 1``,
   ``log_mae: true``) and skips its final evaluation of the whole data set
   (``final_eval: false``), which atomtrain does not do either.
4. Times each exported ``model.pt`` with ``metatomic_ase.MetatomicCalculator``
   (energy + forces, ``time_inference`` of ``bench/soap_bpnn.py``) in the
   environment that made it, in a subprocess: on the first water frame (192
   atoms) and its 2x2x2 supercell (1,536 atoms).

Descriptor mapping (atomtrain default -> metatrain hypers):

- cutoff 5 Å, smooth width 0.5 Å -> ``soap.cutoff: {radius: 5, width: 0.5}``
  (atomtrain: cosine switch; metatrain: shifted cosine);
- ``max_angular: 4`` -> ``soap.max_angular: 4`` (l = 0..4 in both);
- ``max_radial: 6`` (6 sine functions at every l) -> ``soap.max_radial: 6``
  (torch-spex's Laplacian eigenstates up to index 6: 7, 6, 6, 5, 5 functions
  for l = 0..4);
- neighbour elements: ``soap.pseudo_species: 2`` (one learnable channel per
  element, one-hot at the start); metatrain's default (``legacy: true``) keeps
  one channel per element (2 for water). Network input: atomtrain 390 features
  (upper triangle of 12 channels x 5 l), metatrain 684 (the full, symmetric
  n x n' x a x a' matrix, with repeats); distinct invariants: 390 and 371.
  (atomtrain's default of 4 pseudo species would give 1,500 features, linear
  combinations of the same 390 invariants for two elements);
- ``bpnn``: 2 hidden layers of 128, layer norm, one network per element, in
  both (metatrain's default width is 32: set to 128).

Training differences left: optimizer and learning-rate schedule (atomtrain:
AdamW, 1 epoch of warm-up, cosine to 1 % of 1e-3; metatrain: Adam, 1 % of the
steps of warm-up, cosine to 0), loss normalisation and target scaling,
shuffling. Both use their default loss.

Reported per tool: seconds per epoch (mean of epochs 2..N, each with its
validation pass: atomtrain's ``train.csv`` ``time_s``, metatrain's time-stamped
per-epoch log lines), training structures/s and atoms/s, wall time and peak RSS
of the training command, time to accuracy (wall time from the start of the
training command to the end of the first epoch whose validation force MAE is
below ``--threshold`` meV/Å, start-up included), the last validation MAEs, and
inference ms/call and ms/atom (median). Ratios are atomtrain / metatrain.

``--with-mace`` then runs ``bench/mace_compare.py`` (atomtrain's
experimental.mace against ``mace_run_train``, with its own defaults: one thread,
frames 0..287 / 288..319) with the same ``--epochs``; its results go to
``bench/results/compare_mace.json`` and into ``compare.json``.

Prints a table; writes ``bench/results/compare.json`` with the load average
before and after every step: the timings are only comparable on an otherwise
idle machine.
"""

import argparse
import datetime
import glob
import json
import os
import re
import subprocess
import sys
import tempfile
import time

import yaml
from soap_bpnn import (
    RESULTS,
    ROOT,
    column,
    environment,
    epoch_times,
    loadavg,
    read_run,
    train,
    write_options,
    write_results,
    xyz_frames,
)


BENCH = os.path.join(ROOT, "bench")
VENVS = os.path.join(BENCH, ".venvs")
WATER = os.path.join(ROOT, "..", "shared", "data", "water-dpmd", "water_train.xyz")
METATRAIN_VERSION = "2026.4.1"
TORCH_VERSION = "2.13.0"
VALIDATION_FRACTION = 0.1  # atomtrain's default validation_set, with seed 0
TARGETS = {"energy": {"key": "energy", "unit": "eV", "forces": {"key": "forces"}}}

# metatrain's SOAP-BPNN at atomtrain's default descriptor and network sizes
METATRAIN_MODEL = {
    "soap": {
        "max_angular": 4,
        "max_radial": 6,
        "cutoff": {"radius": 5.0, "width": 0.5},
    },
    "bpnn": {"num_hidden_layers": 2, "num_neurons_per_layer": 128, "layernorm": True},
}

# run with the python of the environment that exported the model
INFERENCE = """
import json, sys
sys.path.insert(0, {bench!r})
import ase.io
import torch
from soap_bpnn import time_inference
frame = ase.io.read({data!r}, index=0)
out = []
for atoms in (frame, frame.repeat((2, 2, 2))):
    median, best = time_inference(
        {model!r}, {extensions!r}, atoms, {repeats}, {warmup}, None
    )
    out.append({{"n_atoms": len(atoms), "ms_per_call_median": median,
                "ms_per_call_min": best, "ms_per_atom_median": median / len(atoms),
                "ms_per_atom_min": best / len(atoms)}})
print("INFERENCE", json.dumps({{"torch_threads": torch.get_num_threads(),
                               "cells": out}}))
"""


# ---------------------------------------------------------------- environments
def venv_python(version: str) -> str:
    return os.path.join(VENVS, f"metatrain-{version}", "bin", "python")


def describe(python: str) -> dict | None:
    """torch and metatrain versions of an environment (None if it has none)."""
    code = (
        "import json, torch, metatrain; print(json.dumps({'torch': "
        "torch.__version__, 'cuda': torch.version.cuda, 'metatrain': "
        "metatrain.__version__}))"
    )
    if not os.path.exists(python):
        return None
    process = subprocess.run([python, "-c", code], capture_output=True, text=True)
    if process.returncode != 0:
        return None
    return json.loads(process.stdout.strip().splitlines()[-1])


def ensure_metatrain(version: str, torch_version: str) -> tuple[str, dict]:
    """The python of ``bench/.venvs/metatrain-<version>``, made if needed."""
    python = venv_python(version)
    found = describe(python)

    def wanted(d):
        return (
            d is not None
            and d["metatrain"] == version
            and d["torch"].split("+")[0] == torch_version
        )

    if not wanted(found):
        folder = os.path.dirname(os.path.dirname(python))
        print(f"bench: creating {folder} (a few minutes)", flush=True)
        subprocess.run([sys.executable, "-m", "venv", "--clear", folder], check=True)
        subprocess.run(
            [
                python,
                "-m",
                "pip",
                "install",
                "--quiet",
                f"torch=={torch_version}",
                f"metatrain[soap-bpnn]=={version}",
            ],
            check=True,
        )
        found = describe(python)
        if not wanted(found):
            sys.exit(f"bench: {folder} has {found}, not metatrain {version}")
    if found["cuda"] is not None:
        sys.exit(
            f"bench: {python} has a CUDA build of torch ({found['torch']}); remove "
            "the folder and install the CPU build (torch==X+cpu)"
        )
    return python, found


# ------------------------------------------------------------------------ data
def split_water(path: str, folder: str) -> tuple[str, str, int, int, float]:
    """``train.xyz`` and ``val.xyz`` with atomtrain's seed-0 split of ``path``
    (frames copied as text, in the order of the permutation)."""
    import torch

    frames = xyz_frames(path)
    # atomtrain.data.dataset.split with validation_set 0.1 and seed 0
    n_val = int(round(VALIDATION_FRACTION * len(frames)))
    order = torch.randperm(
        len(frames), generator=torch.Generator().manual_seed(0)
    ).tolist()
    train_path = os.path.join(folder, "train.xyz")
    val_path = os.path.join(folder, "val.xyz")
    for name, indices in ((train_path, order[n_val:]), (val_path, order[:n_val])):
        with open(name, "w") as file:
            file.writelines(line for i in indices for line in frames[i])
    atoms = sum(len(frames[i]) - 2 for i in order[n_val:]) / (len(frames) - n_val)
    return train_path, val_path, len(frames) - n_val, n_val, atoms


# ------------------------------------------------------------------- atomtrain
_ATOMTRAIN_EPOCH = re.compile(
    r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d),(\d{3}) Epoch\s+(\d+) \|.*"
    r"val forces MAE \(meV/Å\): ([-+.\deE]+)"
)


def run_atomtrain(folder, train_xyz, val_xyz, epochs, batch_size) -> dict:
    os.makedirs(folder, exist_ok=True)
    write_options(
        folder,
        train_xyz,
        "eV",
        epochs,
        batch_size,
        arch="soap_bpnn",
        validation=val_xyz,
        extra={"test_set": 0.0, "base_precision": 32, "device": "cpu"},
        model={"soap": {"pseudo_species": 2}},
    )
    result = {"loadavg_before": loadavg()}
    launched = time.time()
    peak, source, wall = train(folder, log="stdout.txt")
    result["loadavg_after"] = loadavg()
    rows, _ = read_run(folder)
    mean, median, first = epoch_times(rows)
    (log,) = glob.glob(os.path.join(folder, "outputs", "*", "*", "train.log"))
    curve = []
    with open(log) as file:
        for line in file:
            match = _ATOMTRAIN_EPOCH.match(line)
            if match:
                stamp = datetime.datetime.strptime(match[1], "%Y-%m-%d %H:%M:%S")
                seconds = stamp.timestamp() + int(match[2]) / 1000 - launched
                curve.append((int(match[3]), seconds, float(match[4])))
    result.update(
        seconds_per_epoch=mean,
        seconds_per_epoch_median=median,
        first_epoch_s=first,
        epochs=int(rows[-1]["epoch"]),
        training_wall_s=wall,
        peak_rss_mib=peak,
        peak_rss_source=source,
        val_energy_mae=column(rows, "val energy MAE")[0],
        val_forces_mae=column(rows, "val forces MAE")[0],
        curve=curve,
        parameters=parameters(log, r"model has ([\d,]+) parameters"),
        folder=folder,
    )
    return result


# ------------------------------------------------------------------- metatrain
_METATRAIN_STAMP = re.compile(r"^\[(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d)\]\[INFO\] - (.*)")


def metatrain_options(train_xyz, val_xyz, epochs, batch_size) -> dict:
    def dataset(path):
        return {
            "systems": {"read_from": path, "length_unit": "angstrom"},
            "targets": TARGETS,
        }

    return {
        "seed": 0,
        "base_precision": 32,
        "device": "cpu",
        "final_eval": False,
        "architecture": {
            "name": "soap_bpnn",
            "model": METATRAIN_MODEL,
            "training": {
                "batch_size": batch_size,
                "num_epochs": epochs,
                "log_interval": 1,
                "log_mae": True,
                "checkpoint_interval": 1000,
            },
        },
        "training_set": dataset(train_xyz),
        "validation_set": dataset(val_xyz),
        "test_set": 0.0,
    }


def run_metatrain(folder, python, train_xyz, val_xyz, epochs, batch_size) -> dict:
    os.makedirs(folder, exist_ok=True)
    options = metatrain_options(train_xyz, val_xyz, epochs, batch_size)
    with open(os.path.join(folder, "options.yaml"), "w") as file:
        yaml.safe_dump(options, file, sort_keys=False)
    mtt = os.path.join(os.path.dirname(python), "mtt")
    result = {"loadavg_before": loadavg()}
    launched = time.time()
    peak, source, wall = train(
        folder, command=[mtt, "train", "options.yaml"], log="stdout.txt"
    )
    result["loadavg_after"] = loadavg()
    (log,) = glob.glob(os.path.join(folder, "outputs", "*", "*", "train.log"))
    start, ends, curve, last = None, [], [], {}
    with open(log) as file:
        for line in file:
            match = _METATRAIN_STAMP.match(line)
            if not match:
                continue
            stamp = datetime.datetime.strptime(match[1], "%Y-%m-%d %H:%M:%S")
            seconds = stamp.timestamp() - launched
            message = match[2]
            if message.strip() == "Starting training":
                start = seconds
            epoch = re.match(r"Epoch:\s+(\d+) \|", message)
            if epoch:
                # "... | validation forces MAE: 566.68 meV/A | ..."
                values = {}
                for part in message.split(" | "):
                    key, _, value = part.partition(":")
                    if key.startswith("validation ") and value.strip():
                        values[key[len("validation ") :]] = float(value.split()[0])
                ends.append(seconds)
                last = values
                # metatrain counts epochs from 0
                curve.append((int(epoch[1]) + 1, seconds, values["forces MAE"]))
    if start is None or len(ends) < 1:
        sys.exit(f"bench: no epoch lines in {log}")
    times = [start, *ends]
    durations = [b - a for a, b in zip(times, times[1:])]
    later = durations[1:] or durations
    result.update(
        seconds_per_epoch=sum(later) / len(later),
        seconds_per_epoch_median=sorted(later)[len(later) // 2],
        first_epoch_s=durations[0],
        epochs=len(ends),
        training_wall_s=wall,
        peak_rss_mib=peak,
        peak_rss_source=source,
        val_energy_mae=last.get("energy MAE (per atom)"),
        val_forces_mae=last.get("forces MAE"),
        curve=curve,
        parameters=parameters(log, r"actual number: (\d+)"),
        options=options,
        folder=folder,
    )
    return result


def parameters(log: str, pattern: str) -> int | None:
    with open(log) as file:
        match = re.search(pattern, file.read())
    return int(match[1].replace(",", "")) if match else None


# ------------------------------------------------------------------- inference
def time_exported(python, folder, data, repeats, warmup) -> dict:
    """Run ``INFERENCE`` with ``python`` on ``folder/model.pt`` (under
    ``/usr/bin/time -v`` for the peak RSS of the inference process)."""
    extensions = os.path.join(folder, "extensions")
    if not (os.path.isdir(extensions) and os.listdir(extensions)):
        extensions = None
    script = INFERENCE.format(
        bench=BENCH,
        data=data,
        model=os.path.join(folder, "model.pt"),
        extensions=extensions,
        repeats=repeats,
        warmup=warmup,
    )
    time_log = os.path.join(folder, "inference-time-v.txt")
    command = [python, "-c", script]
    if os.access("/usr/bin/time", os.X_OK):
        command = ["/usr/bin/time", "-v", "-o", time_log, *command]
    load_before = loadavg()
    process = subprocess.run(command, capture_output=True, text=True, cwd=folder)
    if process.returncode != 0:
        sys.exit(f"bench: inference failed in {folder}:\n{process.stderr[-3000:]}")
    (line,) = [x for x in process.stdout.splitlines() if x.startswith("INFERENCE ")]
    result = json.loads(line.split(" ", 1)[1])
    result.update(loadavg_before=load_before, loadavg_after=loadavg())
    if os.path.exists(time_log):
        with open(time_log) as file:
            match = re.search(
                r"Maximum resident set size \(kbytes\): (\d+)", file.read()
            )
        result["peak_rss_mib"] = int(match[1]) / 1024 if match else None
    return result


# ---------------------------------------------------------------------- report
def time_to_accuracy(run: dict, threshold: float) -> float | None:
    for _, seconds, forces_mae in run["curve"]:
        if forces_mae < threshold:
            return seconds
    return None


def ratios(results: dict) -> dict:
    a, m = results["runs"]["atomtrain"], results["runs"]["metatrain"]
    out = {
        "structures_per_s": a["structures_per_s"] / m["structures_per_s"],
        "peak_rss": a["peak_rss_mib"] / m["peak_rss_mib"],
    }
    for cell_a, cell_m in zip(a["inference"]["cells"], m["inference"]["cells"]):
        out[f"inference_ms_per_atom_{cell_a['n_atoms']}"] = (
            cell_a["ms_per_atom_median"] / cell_m["ms_per_atom_median"]
        )
    tta_a, tta_m = a["time_to_accuracy_s"], m["time_to_accuracy_s"]
    if tta_a is not None and tta_m is not None:
        out["time_to_accuracy"] = tta_a / tta_m
        out["time_to_accuracy_bound"] = "="
    elif tta_a is not None:
        # metatrain did not get there: it would take longer than its last epoch
        out["time_to_accuracy"] = tta_a / m["curve"][-1][1]
        out["time_to_accuracy_bound"] = "<"
    elif tta_m is not None:
        # atomtrain did not get there: it would take longer than its last epoch
        out["time_to_accuracy"] = a["curve"][-1][1] / tta_m
        out["time_to_accuracy_bound"] = ">"
    else:
        out["time_to_accuracy"] = None
        out["time_to_accuracy_bound"] = "n/a"
    return out


def print_table(results: dict) -> None:
    a, m = results["runs"]["atomtrain"], results["runs"]["metatrain"]
    r = results["ratios"]

    def number(value, digits):
        return "n/a" if value is None else f"{value:,.{digits}f}"

    def tta(run):
        seconds = run["time_to_accuracy_s"]
        return f"not in {run['epochs']} ep." if seconds is None else f"{seconds:.0f}"

    if r["time_to_accuracy"] is None:
        tta_ratio = "n/a"
    else:
        bound = {"<": "< ", ">": "> "}.get(r["time_to_accuracy_bound"], "")
        tta_ratio = f"{bound}{r['time_to_accuracy']:.2f}"
    speedup = m["seconds_per_epoch"] / a["seconds_per_epoch"]
    rows = [
        ("parameters", number(a["parameters"], 0), number(m["parameters"], 0), ""),
        ("epochs", a["epochs"], m["epochs"], ""),
        (
            "first epoch (s)",
            number(a["first_epoch_s"], 1),
            number(m["first_epoch_s"], 1),
            "",
        ),
        (
            "s/epoch (mean, epochs 2..N)",
            number(a["seconds_per_epoch"], 1),
            number(m["seconds_per_epoch"], 1),
            f"1/{speedup:.2f}",
        ),
        (
            "training structures/s",
            number(a["structures_per_s"], 2),
            number(m["structures_per_s"], 2),
            f"{r['structures_per_s']:.2f} (target >= 3)",
        ),
        (
            "training atoms/s",
            number(a["atoms_per_s"], 0),
            number(m["atoms_per_s"], 0),
            "",
        ),
        (
            "training command wall time (s)",
            number(a["training_wall_s"], 0),
            number(m["training_wall_s"], 0),
            "",
        ),
        (
            "peak RSS of training (MiB)",
            number(a["peak_rss_mib"], 0),
            number(m["peak_rss_mib"], 0),
            f"{r['peak_rss']:.2f} (target <= 0.5)",
        ),
        (
            f"time to val F MAE < {results['threshold_mev_per_A']:g} meV/Å (s)",
            tta(a),
            tta(m),
            tta_ratio,
        ),
        (
            "val energy MAE, last epoch (meV/atom)",
            number(a["val_energy_mae"], 2),
            number(m["val_energy_mae"], 2),
            "",
        ),
        (
            "val forces MAE, last epoch (meV/Å)",
            number(a["val_forces_mae"], 1),
            number(m["val_forces_mae"], 1),
            "",
        ),
    ]
    for cell_a, cell_m in zip(a["inference"]["cells"], m["inference"]["cells"]):
        n = cell_a["n_atoms"]
        rows.append(
            (
                f"inference {n} atoms (ms/call)",
                number(cell_a["ms_per_call_median"], 1),
                number(cell_m["ms_per_call_median"], 1),
                "",
            )
        )
        rows.append(
            (
                f"inference {n} atoms (ms/atom)",
                number(cell_a["ms_per_atom_median"], 4),
                number(cell_m["ms_per_atom_median"], 4),
                f"{r[f'inference_ms_per_atom_{n}']:.2f} (target <= 0.5)",
            )
        )
    rows.append(
        (
            "peak RSS of inference process (MiB)",
            number(a["inference"].get("peak_rss_mib"), 0),
            number(m["inference"].get("peak_rss_mib"), 0),
            "",
        )
    )
    for when in ("before", "after"):
        rows.append(
            (
                f"load average {when} training",
                " ".join(map(str, a[f"loadavg_{when}"])),
                " ".join(map(str, m[f"loadavg_{when}"])),
                "",
            )
        )
    width = max(len(str(row[0])) for row in rows)
    print()
    print(
        f"water {results['n_train']} train / {results['n_val']} val, batch "
        f"{results['batch_size']}, float32, SOAP-BPNN, metatrain "
        f"{results['environment']['metatrain']}"
    )
    print(f"{'':<{width}}  {'atomtrain':>14}  {'metatrain':>14}  atomtrain/metatrain")
    for label, left, right, ratio in rows:
        print(f"{label:<{width}}  {left!s:>14}  {right!s:>14}  {ratio}")


def run_mace(epochs: int) -> dict | None:
    """``bench/mace_compare.py`` with ``--epochs``; its JSON results."""
    try:
        import mace_compare
    except ImportError as error:
        print(f"bench: --with-mace needs bench/mace_compare.py ({error})")
        return None
    # its own file, so that a plain run of mace_compare.py keeps its results
    output = os.path.join(RESULTS, "compare_mace.json")
    argv = sys.argv
    sys.argv = ["mace_compare.py", "--epochs", str(epochs), "--output", output]
    try:
        mace_compare.main()
    finally:
        sys.argv = argv
    with open(output) as file:
        return json.load(file)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--epochs", type=int, default=3, help="default: 3 (>= 2)")
    parser.add_argument("--batch-size", type=int, default=8, help="default: 8")
    parser.add_argument(
        "--threshold",
        type=float,
        default=150.0,
        help="validation force MAE (meV/Å) of the time to accuracy (default: 150)",
    )
    parser.add_argument("--metatrain", default=METATRAIN_VERSION)
    parser.add_argument("--torch", default=TORCH_VERSION)
    parser.add_argument("--repeats", type=int, default=30, help="default: 30")
    parser.add_argument("--warmup", type=int, default=5, help="default: 5")
    parser.add_argument("--data", default=WATER, help="default: the water set")
    parser.add_argument(
        "--workdir", help="run in this folder and keep it (default: a temporary one)"
    )
    parser.add_argument("--output", default=os.path.join(RESULTS, "compare.json"))
    parser.add_argument(
        "--setup-only", action="store_true", help="make the environment and stop"
    )
    parser.add_argument(
        "--with-mace", action="store_true", help="also run bench/mace_compare.py"
    )
    args = parser.parse_args()
    if args.epochs < 2:
        parser.error("--epochs must be at least 2 (the first epoch is left out)")

    python, found = ensure_metatrain(args.metatrain, args.torch)
    print(f"bench: metatrain environment {python}: {found}", flush=True)
    if args.setup_only:
        return

    data = os.path.abspath(args.data)
    if args.workdir:
        os.makedirs(args.workdir, exist_ok=True)
        workdir, cleanup = os.path.abspath(args.workdir), None
    else:
        cleanup = tempfile.TemporaryDirectory(prefix="bench-compare-")
        workdir = cleanup.name
    print(f"bench: working folder {workdir}", flush=True)
    load_before = loadavg()
    try:
        train_xyz, val_xyz, n_train, n_val, atoms = split_water(data, workdir)
        runs = {}
        print(f"bench: atomtrain soap_bpnn, {args.epochs} epochs ...", flush=True)
        runs["atomtrain"] = run_atomtrain(
            os.path.join(workdir, "atomtrain"),
            train_xyz,
            val_xyz,
            args.epochs,
            args.batch_size,
        )
        print(f"bench: metatrain soap_bpnn, {args.epochs} epochs ...", flush=True)
        runs["metatrain"] = run_metatrain(
            os.path.join(workdir, "metatrain"),
            python,
            train_xyz,
            val_xyz,
            args.epochs,
            args.batch_size,
        )
        pythons = {"atomtrain": sys.executable, "metatrain": python}
        for name, run in runs.items():
            print(f"bench: inference of {name}'s model.pt ...", flush=True)
            run["inference"] = time_exported(
                pythons[name], run["folder"], data, args.repeats, args.warmup
            )
            run["structures_per_s"] = n_train / run["seconds_per_epoch"]
            run["atoms_per_s"] = n_train * atoms / run["seconds_per_epoch"]
            run["time_to_accuracy_s"] = time_to_accuracy(run, args.threshold)
    finally:
        if cleanup is not None:
            cleanup.cleanup()

    results = {
        "data": data,
        "n_train": n_train,
        "n_val": n_val,
        "atoms_per_structure": atoms,
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "threshold_mev_per_A": args.threshold,
        "runs": runs,
        "environment": environment(
            load_before, metatrain=found["metatrain"], metatrain_torch=found["torch"]
        ),
    }
    results["ratios"] = ratios(results)
    print_table(results)
    env = results["environment"]
    print(
        f"{env['cpu']}, {env['cpu_count']} cores, torch {env['torch']} "
        f"({env['torch_threads']} threads); load average before / after: "
        f"{env['loadavg_before']} / {env['loadavg_after']}"
    )
    if args.with_mace:
        results["mace_compare"] = run_mace(args.epochs)
    write_results(results, args.output)


if __name__ == "__main__":
    main()
