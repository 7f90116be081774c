"""Kill a training with SIGKILL at random instants, resume it each time, and
compare its final weights with an uninterrupted run (used by tests and bench)."""

from __future__ import annotations

import glob
import os
import random
import subprocess
import sys
import time

import ase.io
import torch
import yaml


RESOURCES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "resources")
ATOMTRAIN = [sys.executable, "-m", "atomtrain"]


def prepare(folder: str, epochs: int = 6) -> None:
    """Options and data of a small float64 training with a fixed seed."""
    os.makedirs(folder, exist_ok=True)
    frames = ase.io.read(os.path.join(RESOURCES, "ethanol_reduced_100.xyz"), ":24")
    ase.io.write(os.path.join(folder, "ethanol.xyz"), frames)
    options = {
        "architecture": {
            "name": "soap_bpnn",
            "model": {
                "soap": {"max_radial": 4, "max_angular": 2},
                "bpnn": {"num_neurons_per_layer": 16},
            },
            "training": {"num_epochs": epochs, "batch_size": 4},
        },
        "training_set": {
            "systems": "ethanol.xyz",
            "targets": {"energy": {"unit": "kcal/mol", "forces": True}},
        },
        "validation_set": 0.25,
        "base_precision": 64,
        "seed": 7,
    }
    with open(os.path.join(folder, "options.yaml"), "w") as file:
        yaml.safe_dump(options, file)


def _environment() -> dict:
    return {**os.environ, "OMP_NUM_THREADS": "1"}


def run_to_end(folder: str) -> int:
    command = [*ATOMTRAIN, "train", "options.yaml", "--restart", "auto"]
    return subprocess.run(
        command, cwd=folder, env=_environment(), capture_output=True
    ).returncode


def kill_and_resume(folder: str, kills: int, seed: int = 0, window=(1.0, 8.0)):
    """Start, SIGKILL after a random delay, restart with ``--restart auto``; then
    finish. Returns the delays used."""
    rng = random.Random(seed)
    delays = []
    for _ in range(kills):
        process = subprocess.Popen(
            [*ATOMTRAIN, "train", "options.yaml", "--restart", "auto"],
            cwd=folder,
            env=_environment(),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        delay = rng.uniform(*window)
        delays.append(delay)
        try:
            process.wait(timeout=delay)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    assert run_to_end(folder) == 0
    return delays


def final_checkpoint(folder: str) -> dict:
    paths = glob.glob(os.path.join(folder, "outputs", "*", "*", "model.ckpt"))
    newest = max(paths, key=os.path.getmtime)
    return torch.load(newest, weights_only=True)


def all_checkpoints_readable(folder: str) -> list[str]:
    from atomtrain.training.checkpoints import read_checkpoint

    paths = glob.glob(os.path.join(folder, "outputs", "*", "*", "*.ckpt"))
    for path in paths:
        read_checkpoint(path)  # raises on a truncated or corrupt file
    return paths


def same_weights(a: dict, b: dict) -> bool:
    states = ("model_state_dict", "best_model_state_dict")
    return all(
        a[s].keys() == b[s].keys() and all(torch.equal(a[s][k], b[s][k]) for k in a[s])
        for s in states
    )


def timed(function, *args):
    start = time.perf_counter()
    result = function(*args)
    return result, time.perf_counter() - start
