"""SOAP-BPNN training throughput, peak memory and exported-model inference speed.

    python bench/soap_bpnn.py [--epochs 3] [--dataset water|ethanol]

Trains through the CLI in a temporary folder, reads train.csv, then times the
exported model through metatomic's ASE calculator. Prints a table and writes
bench/results/soap_bpnn_<dataset>.json.
"""

import argparse
import csv
import glob
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

import ase.io
import numpy as np
import yaml


ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATASETS = {
    "water": (
        os.path.join(ROOT, "..", "shared", "data", "water-dpmd", "water_train.xyz"),
        "eV",
    ),  # fmt: skip
    "ethanol": (
        os.path.join(ROOT, "tests", "resources", "ethanol_reduced_100.xyz"),
        "kcal/mol",
    ),  # fmt: skip
}


def train(path, unit, epochs, folder):
    options = {
        "architecture": {"name": "soap_bpnn",
                         "training": {"num_epochs": epochs, "batch_size": 8}},
        "training_set": {"systems": path, "targets": {
            "energy": {"key": "energy", "unit": unit, "forces": {"key": "forces"}}}},
        "validation_set": 0.1,
        "seed": 0,
    }  # fmt: skip
    with open(os.path.join(folder, "options.yaml"), "w") as file:
        yaml.safe_dump(options, file)
    command = [os.path.join(os.path.dirname(sys.executable), "atomtrain"), "train",
               "options.yaml"]  # fmt: skip
    subprocess.run(command, cwd=folder, check=True, stdout=subprocess.DEVNULL)
    peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    (csv_path,) = glob.glob(os.path.join(folder, "outputs", "*", "*", "train.csv"))
    with open(csv_path) as file:
        return list(csv.DictReader(file)), peak_mb


def inference(model, frames, repeat):
    from metatomic_ase import MetatomicCalculator

    atoms = frames[0].repeat(repeat) if repeat > 1 else frames[0].copy()
    atoms.calc = MetatomicCalculator(model)
    atoms.get_forces()  # warm up
    times = []
    rng = np.random.default_rng(0)
    for _ in range(5):
        atoms.positions += rng.normal(scale=1e-3, size=atoms.positions.shape)
        start = time.perf_counter()
        atoms.get_forces()
        times.append(time.perf_counter() - start)
    return len(atoms), 1000 * float(np.median(times)) / len(atoms)


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--dataset", choices=sorted(DATASETS), default="water")
    args = parser.parse_args()
    path, unit = DATASETS[args.dataset]
    path = os.path.abspath(path)
    frames = ase.io.read(path, ":")
    with tempfile.TemporaryDirectory() as folder:
        rows, peak_mb = train(path, unit, args.epochs, folder)
        times = [float(r["time_s"]) for r in rows]
        epoch_s = float(np.median(np.diff(times))) if len(times) > 1 else times[0]
        n_train = len(frames) - round(0.1 * len(frames))
        atoms_per_structure = len(frames[0])
        model = os.path.join(folder, "model.pt")
        results = {
            "dataset": args.dataset,
            "epochs": args.epochs,
            "seconds_per_epoch": epoch_s,
            "structures_per_s": n_train / epoch_s,
            "atoms_per_s": n_train * atoms_per_structure / epoch_s,
            "peak_rss_mb": peak_mb,
            "val_energy_mae_mev_per_atom": float(rows[-1]["val energy MAE (meV/atom)"]),
            "val_forces_mae_mev_per_A": float(rows[-1]["val forces MAE (meV/Å)"]),
        }
        for repeat in (1, 2) if frames[0].pbc.all() else (1,):
            n_atoms, ms = inference(model, frames, repeat)
            results[f"inference_ms_per_atom_{n_atoms}"] = ms
    for key, value in results.items():
        print(f"{key:<32} {value:.4g}" if isinstance(value, float) else
              f"{key:<32} {value}")  # fmt: skip
    os.makedirs(os.path.join(ROOT, "bench", "results"), exist_ok=True)
    output = os.path.join(ROOT, "bench", "results", f"soap_bpnn_{args.dataset}.json")
    with open(output, "w") as file:
        json.dump(results, file, indent=2)


if __name__ == "__main__":
    main()
