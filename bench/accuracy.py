"""Accuracy benchmark: ACE-MP on rMD17 ethanol or acetylacetone, against the
published figures and (optionally) MACE's own trainer, for a wall-time budget.

    python bench/accuracy.py --benchmark rmd17-ethanol|acac --budget SECONDS
        --test PATH [--test PATH ...] [--with-mace] [--json OUT]
        [--workdir DIR] [--threads N] [--processes N] [--mace-only]

1. Copies the training data, ``<repo>/../shared/data/rmd17-ethanol/{train.xyz,
   isolated_atoms.xyz}`` or ``<repo>/../shared/data/acac/{train_300K.xyz,
   isolated_atoms.xyz}``, and the benchmark's documented options,
   ``bench/accuracy/<benchmark>.yaml`` (``ace_mp``, float64, seed 0; 950 / 50
   or 450 / 50 structures by atomtrain's seed-0 shuffle), into the working
   folder (``--workdir``, or a new folder under /tmp that is kept), and runs
   ``atomtrain train options.yaml -o architecture.training.max_time=<BUDGET>``
   there as ``--processes`` cooperating processes (default 2, the cores of
   the 2-core machine the targets are set for: ``torchrun --nproc-per-node 2
   -m atomtrain train ...``, each process on its share of every batch; 1 runs
   ``atomtrain train`` alone) with OMP_NUM_THREADS and MKL_NUM_THREADS set to
   ``--threads`` (default 1) in each, under ``/usr/bin/time -v``. MACE, with
   ``--with-mace``, runs afterwards with processes x threads threads, so both
   codes get the same cores. ``max_time`` bounds the training
   loop (start-up, neighbour lists, export and the final evaluation come on
   top): the whole command's wall time is reported beside it. The script
   checks in ``options_restart.yaml`` that the override took effect.
2. Scores the exported ``model.pt`` on every ``--test`` file (extended XYZ,
   ``energy`` and ``forces`` in eV and Å; a placeholder box of a molecule,
   ``pbc="F F F"``, is dropped) through ``metatomic_ase.MetatomicCalculator``
   in the model's dtype (float64), structure by structure: energy MAE and
   RMSE in meV per structure, force MAE and RMSE in meV/Å over all force
   components.
3. Prints, per test file, these errors beside the published figures (MACE
   paper, NeurIPS 2022): MAE for rMD17 ethanol, RMSE for acac, the 600 K
   figures for a file whose name contains "600" and the 300 K ones otherwise;
   then the parameter count, the epochs done, the training time and the
   validation errors of the last epoch (``train.csv``).
4. ``--with-mace`` also trains MACE with ``mace_run_train`` (from the
   interpreter's bin folder) on exactly atomtrain's split: before training,
   the script calls atomtrain's own ``load_datasets`` on the same options file
   in the working folder (the code ``atomtrain train`` runs, same seed) and
   reads which frames of the training file it put in validation (each
   structure keeps its ``file:index`` source); those frames, copied as text,
   become ``mace-data/valid.xyz`` and the others ``mace-data/train.xyz`` (the number of
   validation structures is checked against atomtrain's log afterwards).
   MACE's rMD17-style hypers scaled to a CPU: hidden irreps 32x0e + 32x1o,
   spherical harmonics up to ``--max_ell 2`` (the "L = 2" of
   ``bench/mace_compare.py``; ``--max_L`` is ignored when hidden irreps are
   given, and these fix L = 1 for the messages), correlation 3, r_max 5 Å,
   2 interactions, batch 5 (validation batch 10), lr 0.01, energy weight 1,
   forces weight 1000, E0s from the isolated-atom file, float64, EMA 0.99,
   AMSGrad, stage two (``--swa`` with MACE's defaults: energy weight 1000,
   forces weight 100, lr 1e-3) from 80 % of the epochs, as atomtrain's
   ``stage_two.start``.
   ``mace_run_train`` has no time budget, so the script calibrates: a first
   run of one epoch (``mace-calibration/``, same data and hypers) gives the
   seconds of one epoch with its validation pass (from the time stamps of
   MACE's log; a first epoch, so if anything slower than later ones), and the
   real run gets ``--max_num_epochs = max(1, floor(budget / that))``. It always
   ends normally and writes its final model (the stage-two model when there is
   one); its training time (from the "Started training" log line to the last
   epoch's validation line, the span ``max_time`` bounds in atomtrain) is
   reported beside the budget, so an overrun shows. The calibration's wall time
   is reported separately. MACE's final model is scored on the same test files
   with ``mace.calculators.MACECalculator`` in float64. ``--mace-only`` skips
   atomtrain's training (its split is still computed the same way): to run the
   two codes side by side, one per core, in two commands.
5. Draws validation force MAE (meV/Å, log scale) against training time
   (minutes) for both codes into ``<workdir>/accuracy_curves.png``: atomtrain
   from ``train.csv`` (``time_s``, ``val forces MAE (meV/Å)``), MACE from its
   log (time stamp of each epoch's validation line).
6. ``--json OUT`` writes these figures (per test file and code, the published
   ones, budget, wall times, epochs, parameters, threads, environment with the
   load average before and after, validation curves) and, under ``model``, the
   absolute path of the exported atomtrain model that was scored.

Everything runs on the CPU, one code after the other. Timings, and so what a
budget buys, depend on the threads and on whatever else runs on the machine:
the load average is recorded. The published models were trained for hours on
a GPU with ~3 M parameters; a short CPU budget is not expected to reach them.
"""

import argparse
import csv
import datetime
import glob
import math
import os
import re
import shutil
import sys
import tempfile
from dataclasses import dataclass

import ase
import ase.io
import numpy as np
import yaml
from compare import parameters
from mace_compare import _MACE_LINE, timed  # MACE's PerAtomMAE validation lines
from soap_bpnn import ROOT, environment, loadavg, write_results, xyz_frames


DATA = os.path.join(ROOT, "..", "shared", "data")
OPTIONS = os.path.join(ROOT, "bench", "accuracy")
ISOLATED = "isolated_atoms.xyz"
CURVE_PNG = "accuracy_curves.png"
BIN = os.path.dirname(sys.executable)


@dataclass
class Benchmark:
    name: str
    data: str  # folder under shared/data
    train_file: str  # the file the options read, relative to the working folder
    metric: str  # the published metric: "MAE" or "RMSE"
    # condition -> code -> (energy meV per structure, forces meV/Å)
    published: dict[str, dict[str, tuple[float, float]]]

    def condition(self, test_path: str) -> str:
        """Which published figures a test file is compared with."""
        if len(self.published) == 1:
            return next(iter(self.published))
        return "600 K" if "600" in os.path.basename(test_path) else "300 K"


BENCHMARKS = {
    "rmd17-ethanol": Benchmark(
        name="rmd17-ethanol",
        data="rmd17-ethanol",
        train_file="train.xyz",
        metric="MAE",
        published={
            "rMD17, 1000 train": {
                "MACE": (0.4, 2.1),
                "Allegro": (0.4, 2.1),
                "NequIP": (0.4, 2.8),
                "BOTNet": (0.4, 3.2),
            }
        },
    ),
    "acac": Benchmark(
        name="acac",
        data="acac",
        train_file="train_300K.xyz",
        metric="RMSE",
        published={
            "300 K": {
                "MACE": (0.9, 5.1),
                "NequIP": (0.81, 5.90),
                "BOTNet": (0.89, 6.3),
            },
            "600 K": {
                "MACE": (4.6, 22.4),
                "NequIP": (6.04, 27.8),
                "BOTNet": (6.2, 29.8),
            },
        },
    ),
}

# MACE's rMD17 recipe (mace-torch README / paper) scaled down to a CPU
MACE_HYPERS = [
    "--model=MACE",
    "--hidden_irreps=32x0e + 32x1o",
    "--max_ell=2",
    "--correlation=3",
    "--r_max=5.0",
    "--num_interactions=2",
    "--batch_size=5",
    "--valid_batch_size=10",
    "--lr=0.01",
    "--energy_weight=1.0",
    "--forces_weight=1000.0",
    "--ema",
    "--ema_decay=0.99",
    "--amsgrad",
    "--default_dtype=float64",
    "--error_table=PerAtomMAE",
    "--eval_interval=1",
    "--device=cpu",
    "--seed=0",
]
STAGE_TWO_START = 0.8  # fraction of MACE's epochs, as stage_two.start of the options
_MACE_STAMP = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}) \S+: (.*)")


# ------------------------------------------------------------------ set-up
def working_folder(workdir: str | None) -> str:
    """``workdir`` (made if needed; it must not hold an earlier run) or a new
    folder under /tmp, kept: the model and the plot stay there."""
    if workdir is None:
        return tempfile.mkdtemp(prefix="accuracy-", dir="/tmp")
    folder = os.path.abspath(workdir)
    os.makedirs(folder, exist_ok=True)
    if os.path.exists(os.path.join(folder, "outputs")):
        sys.exit(f"{folder} already holds outputs/ of a run: give a new folder")
    return folder


def copy_inputs(benchmark: Benchmark, folder: str) -> None:
    """The training file, the isolated atoms and the options file."""
    source = os.path.join(DATA, benchmark.data)
    for name in (benchmark.train_file, ISOLATED):
        shutil.copy(os.path.join(source, name), os.path.join(folder, name))
    shutil.copy(
        os.path.join(OPTIONS, f"{benchmark.name}.yaml"),
        os.path.join(folder, "options.yaml"),
    )


def child_env(threads: int) -> dict:
    env = dict(os.environ)
    env.update(
        OMP_NUM_THREADS=str(threads),
        MKL_NUM_THREADS=str(threads),
        PYTHONUNBUFFERED="1",
    )
    return env


# --------------------------------------------------------------- atomtrain
def budget_override(budget: float) -> str:
    return f"architecture.training.max_time={budget:g}"


def atomtrain_validation_frames(folder: str, budget: float) -> list[int]:
    """Indices (in the training file) of the structures ``atomtrain train``
    validates on with ``options.yaml``: atomtrain's own reading and seed-0 split."""
    from atomtrain.data.dataset import load_datasets
    from atomtrain.options.load import load_options

    here = os.getcwd()
    os.chdir(folder)  # read_from paths are relative to the working folder
    try:
        options = load_options("options.yaml", [budget_override(budget)])
        _, validation, _, _ = load_datasets(options)
    finally:
        os.chdir(here)
    return [int(s.source.rsplit(":", 1)[1]) for part in validation for s in part]


def train_atomtrain(folder: str, budget: float, env: dict, processes: int) -> dict:
    """Run the training command; wall time, peak RSS and the run folder."""
    launcher = [os.path.join(BIN, "atomtrain")]
    if processes > 1:
        launcher = [os.path.join(BIN, "torchrun"), "--nproc-per-node",
                    str(processes), "-m", "atomtrain"]  # fmt: skip
    command = [*launcher, "train", "options.yaml", "-o", budget_override(budget)]
    print(f"bench: {' '.join(command[1:])} (in {folder})", flush=True)
    result = timed(command, folder, env, "atomtrain")
    (run,) = glob.glob(os.path.join(folder, "outputs", "*", "*", "train.csv"))
    run = os.path.dirname(run)
    with open(os.path.join(run, "options_restart.yaml")) as file:
        max_time = yaml.safe_load(file)["architecture"]["training"]["max_time"]
    if float(max_time) != budget:
        sys.exit(f"max_time is {max_time} in {run}, not the budget {budget}")
    result.update(command=" ".join(command[1:]), run=run, max_time=max_time)
    return result


def read_train_csv(run: str) -> tuple[list[dict], dict]:
    """The validation curve (every row of ``train.csv``) and the last row's
    validation columns."""
    with open(os.path.join(run, "train.csv"), newline="") as file:
        rows = list(csv.DictReader(file))
    curve = [
        {
            "epoch": int(row["epoch"]),
            "time_s": float(row["time_s"]),
            "val_forces_mae": float(row["val forces MAE (meV/Å)"]),
            "val_energy_mae_per_atom": float(row["val energy MAE (meV/atom)"]),
        }
        for row in rows
    ]
    last = {k[4:]: float(v) for k, v in rows[-1].items() if k.startswith("val ")}
    return curve, last


def atomtrain_summary(run: dict) -> dict:
    log = os.path.join(run["run"], "train.log")
    curve, validation = read_train_csv(run["run"])
    with open(log) as file:
        counts = re.search(r"(\d+) training, (\d+) validation", file.read())
    return {
        **run,
        "parameters": parameters(log, r"model has ([\d,]+) parameters"),
        "epochs": curve[-1]["epoch"],
        "training_s": curve[-1]["time_s"],
        "n_train": int(counts[1]) if counts else None,
        "n_val": int(counts[2]) if counts else None,
        "validation": validation,
        "curve": curve,
    }


# -------------------------------------------------------------------- MACE
def write_mace_split(
    folder: str, train_file: str, validation: list[int]
) -> tuple[str, str]:
    """``train.xyz`` and ``valid.xyz`` under ``folder``: the frames of
    ``train_file`` (as text) outside and inside ``validation``."""
    frames = xyz_frames(train_file)
    chosen = set(validation)
    train = [i for i in range(len(frames)) if i not in chosen]
    paths = os.path.join(folder, "train.xyz"), os.path.join(folder, "valid.xyz")
    for path, indices in zip(paths, (train, validation)):
        with open(path, "w") as file:
            file.writelines(line for i in indices for line in frames[i])
    return paths


def isolated_energies(isolated: str, train_file: str) -> dict[int, float]:
    """E0 per atomic number of the training set, from the isolated atoms."""
    elements = {int(z) for a in ase.io.read(train_file, ":") for z in a.numbers}
    energies = {}
    for atoms in ase.io.read(isolated, ":"):
        energy, _ = references(atoms)
        energies[int(atoms.numbers[0])] = energy
    return {z: energies[z] for z in sorted(elements)}


def mace_command(
    folder: str, train: str, valid: str, e0s: dict, epochs: int
) -> list[str]:
    command = [
        os.path.join(BIN, "mace_run_train"),
        "--name=mace",
        f"--work_dir={folder}",
        f"--train_file={train}",
        f"--valid_file={valid}",
        "--energy_key=energy",
        "--forces_key=forces",
        f"--E0s={e0s}",
        *MACE_HYPERS,
        f"--max_num_epochs={epochs}",
    ]
    start = int(STAGE_TWO_START * epochs)
    if 1 <= start < epochs:  # mace_run_train drops stage two at a later start
        command += ["--swa", f"--start_swa={start}"]
    return command


def read_mace_log(folder: str) -> dict:
    """From MACE's log: the start of the training loop and, per epoch, the
    seconds since then and the validation MAEs (energy per atom, forces)."""
    logs = glob.glob(os.path.join(folder, "logs", "*.log"))
    (log,) = [path for path in logs if not path.endswith("_debug.log")]
    started, initial, curve = None, None, []
    with open(log) as file:
        for line in file:
            stamp = _MACE_STAMP.match(line)
            if not stamp:
                continue
            seconds = datetime.datetime.strptime(
                stamp[1], "%Y-%m-%d %H:%M:%S.%f"
            ).timestamp()
            if stamp[2].startswith("Started training"):
                started = seconds
            match = _MACE_LINE.match(line)
            if match and match[2] == "Initial":
                initial = seconds
            elif match:
                curve.append(
                    {
                        "epoch": int(match[2].split()[1]) + 1,
                        "time_s": seconds - started,
                        "val_forces_mae": float(match[4]),
                        "val_energy_mae_per_atom": float(match[3]),
                    }
                )
    if started is None or initial is None or not curve:
        sys.exit(f"bench: no training lines in {log}")
    return {"log": log, "initial_s": initial - started, "curve": curve}


def calibrate_mace(folder: str, split: tuple, e0s: dict, env: dict) -> dict:
    """Seconds of one epoch of ``mace_run_train`` (training and validation)."""
    folder = os.path.join(folder, "mace-calibration")
    os.makedirs(folder, exist_ok=True)
    print("bench: mace_run_train, one epoch to calibrate ...", flush=True)
    result = timed(mace_command(folder, *split, e0s, 1), folder, env, "mace")
    log = read_mace_log(folder)
    epoch_s = log["curve"][0]["time_s"] - log["initial_s"]
    return {"wall_s": result["wall_s"], "epoch_s": epoch_s, "folder": folder}


def train_mace(folder: str, split: tuple, e0s: dict, epochs: int, env: dict) -> dict:
    folder = os.path.join(folder, "mace")
    os.makedirs(folder, exist_ok=True)
    command = mace_command(folder, *split, e0s, epochs)
    print(f"bench: mace_run_train, {epochs} epoch(s) ...", flush=True)
    result = timed(command, folder, env, "mace")
    log = read_mace_log(folder)
    models = [os.path.join(folder, f"mace{s}.model") for s in ("_stagetwo", "")]
    model = next(path for path in models if os.path.exists(path))
    last = log["curve"][-1]
    return {
        **result,
        "command": " ".join([os.path.basename(command[0]), *command[1:]]),
        "folder": folder,
        "model_file": model,
        "max_num_epochs": epochs,
        "stage_two": "--swa" in command,
        "epochs": last["epoch"],
        "training_s": last["time_s"],
        "validation": {
            "energy MAE (meV/atom)": last["val_energy_mae_per_atom"],
            "forces MAE (meV/Å)": last["val_forces_mae"],
        },
        "curve": log["curve"],
    }


# ----------------------------------------------------------------- scoring
def references(atoms: ase.Atoms) -> tuple[float, np.ndarray]:
    """Reference energy (eV) and forces (eV/Å) of a frame read by ASE, which
    keeps ``energy`` and ``forces`` in a single-point calculator or in info."""
    if atoms.calc is not None:
        forces = atoms.calc.results.get("forces")
        return float(atoms.get_potential_energy()), forces
    return float(atoms.info["energy"]), atoms.arrays.get("forces")


def without_placeholder_box(atoms: ase.Atoms) -> ase.Atoms:
    """A copy with no calculator and zero cell vectors along non-periodic
    directions (metatomic refuses a box around a molecule)."""
    atoms = ase.Atoms(
        numbers=atoms.numbers, positions=atoms.positions, cell=atoms.cell, pbc=atoms.pbc
    )
    cell = atoms.cell.array.copy()
    cell[~atoms.pbc] = 0.0
    atoms.cell = cell
    return atoms


def score(calculator, frames: list[ase.Atoms]) -> dict:
    """Energy errors per structure (meV) and force errors per component
    (meV/Å) of ``calculator`` on ``frames``."""
    energy_errors, force_errors = [], []
    for frame in frames:
        energy, forces = references(frame)
        atoms = without_placeholder_box(frame)
        atoms.calc = calculator
        energy_errors.append(1000 * (atoms.get_potential_energy() - energy))
        force_errors.append(1000 * (atoms.get_forces() - forces).ravel())
    e, f = np.array(energy_errors), np.concatenate(force_errors)
    return {
        "n_structures": len(frames),
        "energy_mae": float(np.abs(e).mean()),
        "energy_rmse": float(np.sqrt((e**2).mean())),
        "forces_mae": float(np.abs(f).mean()),
        "forces_rmse": float(np.sqrt((f**2).mean())),
    }


def metatomic_calculator(path: str):
    from metatomic.torch import load_atomistic_model
    from metatomic_ase import MetatomicCalculator

    extensions = os.path.join(os.path.dirname(path), "extensions")
    extensions = extensions if os.path.isdir(extensions) else None
    model = load_atomistic_model(path, extensions_directory=extensions)
    dtype = model.capabilities().dtype
    calculator = MetatomicCalculator(
        model, extensions_directory=extensions, device="cpu"
    )
    return calculator, dtype


def mace_calculator(path: str):
    from mace.calculators import MACECalculator

    calculator = MACECalculator(model_paths=path, device="cpu", default_dtype="float64")
    n_parameters = sum(p.numel() for p in calculator.models[0].parameters())
    return calculator, n_parameters


def score_tests(calculator, tests: list[str]) -> dict:
    return {path: score(calculator, ase.io.read(path, ":")) for path in tests}


# ------------------------------------------------------------------ report
def published_rows(benchmark: Benchmark, test: str) -> dict:
    condition = benchmark.condition(test)
    return {"condition": condition, "figures": benchmark.published[condition]}


def print_table(results: dict) -> None:
    benchmark = BENCHMARKS[results["benchmark"]]
    codes = results["codes"]
    labels = {"atomtrain": "atomtrain ace_mp", "mace": "mace_run_train MACE"}
    header = (
        f"{'':<28}{'E MAE':>9}{'E RMSE':>9}{'F MAE':>9}{'F RMSE':>9}"
        "   (E: meV per structure, F: meV/Å)"
    )
    print()
    print(
        f"{benchmark.name}: budget {results['budget_s']:g} s of training per code, "
        f"{results.get('processes', 1)} process(es) x "
        f"{results['threads']} thread(s), load "
        f"{results['environment']['loadavg_before']} -> "
        f"{results['environment']['loadavg_after']}"
    )
    for test, published in results["published"].items():
        print()
        first = next(iter(codes.values()))["tests"][test]
        print(
            f"{test} ({first['n_structures']} structures); published "
            f"{benchmark.metric}, {published['condition']}:"
        )
        print(header)
        for name, code in codes.items():
            s = code["tests"][test]
            print(
                f"{labels[name]:<28}{s['energy_mae']:>9.2f}{s['energy_rmse']:>9.2f}"
                f"{s['forces_mae']:>9.1f}{s['forces_rmse']:>9.1f}"
            )
        for name, (energy, forces) in published["figures"].items():
            cells = ["-"] * 4
            column = 0 if benchmark.metric == "MAE" else 1
            cells[column], cells[column + 2] = f"{energy:g}", f"{forces:g}"
            print(f"{name + ' (published)':<28}" + "".join(f"{c:>9}" for c in cells))
    print()
    for name, code in codes.items():
        validation = ", ".join(f"{k} {v:.3g}" for k, v in code["validation"].items())
        print(
            f"{labels[name]}: {code['parameters']:,} parameters, {code['epochs']} "
            f"epochs in {code['training_s']:.0f} s of training "
            f"({code['wall_s']:.0f} s for the whole command); last validation: "
            f"{validation}"
        )
    if "mace_calibration" in results:
        calibration = results["mace_calibration"]
        print(
            f"mace calibration: one epoch {calibration['epoch_s']:.1f} s (command "
            f"{calibration['wall_s']:.0f} s) -> --max_num_epochs "
            f"{codes['mace']['max_num_epochs']}"
        )
    if results["model"] is not None:
        print(f"atomtrain model: {results['model']} ({results['model_dtype']})")


def plot(results: dict, path: str) -> str | None:
    try:
        import matplotlib
    except ImportError:
        print("bench: matplotlib is missing, no plot")
        return None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(6, 4))
    for name, code in results["codes"].items():
        minutes = [p["time_s"] / 60 for p in code["curve"]]
        axis.plot(
            minutes,
            [p["val_forces_mae"] for p in code["curve"]],
            "o-",
            ms=3,
            label=name,
        )
    axis.set_xlabel("training time (min)")
    axis.set_ylabel("validation force MAE (meV/Å)")
    axis.set_yscale("log")
    axis.grid(True, which="both", alpha=0.3)
    axis.legend()
    axis.set_title(
        f"{results['benchmark']}, budget {results['budget_s']:g} s, "
        f"{results.get('processes', 1)} x {results['threads']} thread(s)"
    )
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path


# -------------------------------------------------------------------- main
def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--benchmark", required=True, choices=sorted(BENCHMARKS))
    parser.add_argument(
        "--budget", required=True, type=float, help="seconds of training per code"
    )
    parser.add_argument(
        "--test", required=True, action="append", help="extended XYZ test file"
    )
    parser.add_argument("--with-mace", action="store_true")
    parser.add_argument(
        "--mace-only",
        action="store_true",
        help="train and score only MACE (on atomtrain's split), e.g. beside an "
        "atomtrain run of the same budget on the other core",
    )
    parser.add_argument("--json", help="write the results here")
    parser.add_argument("--workdir", help="default: a new folder under /tmp")
    parser.add_argument("--threads", type=int, default=1, help="default: 1")
    parser.add_argument(
        "--processes",
        type=int,
        default=2,
        help="atomtrain training processes (torchrun); default: 2",
    )
    args = parser.parse_args()
    if args.processes < 1 or args.threads < 1:
        parser.error("--processes and --threads must be at least 1")
    args.with_mace = args.with_mace or args.mace_only
    if args.budget <= 0:
        parser.error("--budget must be positive")
    args.test = [os.path.abspath(path) for path in args.test]
    for path in args.test:
        if not os.path.exists(path):
            parser.error(f"test file {path} does not exist")
    return args


def run_mace(args, benchmark: Benchmark, folder: str, validation: list, env: dict):
    """Calibrate, train and score MACE on atomtrain's split."""
    train_file = os.path.join(folder, benchmark.train_file)
    mace_data = os.path.join(folder, "mace-data")
    os.makedirs(mace_data, exist_ok=True)
    split = write_mace_split(mace_data, train_file, validation)
    e0s = isolated_energies(os.path.join(folder, ISOLATED), train_file)
    calibration = calibrate_mace(folder, split, e0s, env)
    epochs = max(1, math.floor(args.budget / calibration["epoch_s"]))
    mace = train_mace(folder, split, e0s, epochs, env)
    calculator, mace["parameters"] = mace_calculator(mace["model_file"])
    mace["tests"] = score_tests(calculator, args.test)
    mace["n_train"] = len(xyz_frames(split[0]))
    mace["n_val"] = len(validation)
    return calibration, mace


def main() -> None:
    args = parse_args()
    import torch

    torch.set_num_threads(args.threads)
    benchmark = BENCHMARKS[args.benchmark]
    folder = working_folder(args.workdir)
    print(f"bench: working folder {folder}", flush=True)
    copy_inputs(benchmark, folder)
    env = child_env(args.threads)
    load_before = loadavg()
    validation = (
        atomtrain_validation_frames(folder, args.budget) if args.with_mace else None
    )

    model, dtype, codes = None, None, {}
    if not args.mace_only:
        atomtrain = atomtrain_summary(
            train_atomtrain(folder, args.budget, env, args.processes)
        )
        model = os.path.join(folder, "model.pt")
        atomtrain["model_file"] = model
        calculator, dtype = metatomic_calculator(model)
        atomtrain["tests"] = score_tests(calculator, args.test)
        codes["atomtrain"] = atomtrain
    results = {
        "benchmark": benchmark.name,
        "budget_s": args.budget,
        "threads": args.threads,
        "processes": args.processes,
        "model": model,
        "model_dtype": dtype,
        "tests": args.test,
        "published": {t: published_rows(benchmark, t) for t in args.test},
        "published_metric": benchmark.metric,
        "codes": codes,
    }
    if args.with_mace:
        n_val = codes["atomtrain"]["n_val"] if "atomtrain" in codes else None
        if n_val is not None and n_val != len(validation):
            sys.exit(
                f"atomtrain validated on {n_val} structures, the split "
                f"written for MACE has {len(validation)}"
            )
        results["validation_frames"] = sorted(validation)
        mace_env = child_env(args.threads * args.processes)
        calibration, mace = run_mace(args, benchmark, folder, validation, mace_env)
        results["mace_calibration"] = calibration
        results["codes"]["mace"] = mace
    results["environment"] = environment(load_before, cpu_threads_asked=args.threads)
    results["plot"] = plot(results, os.path.join(folder, CURVE_PNG))
    print_table(results)
    if results["plot"]:
        print(f"bench: validation curves drawn in {results['plot']}")
    if args.json:
        write_results(results, args.json)


if __name__ == "__main__":
    main()
