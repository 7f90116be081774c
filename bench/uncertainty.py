"""Uncertainty on acetylacetone: LLPR, a shallow ensemble and a deep ensemble.

    OMP_NUM_THREADS=1 python bench/uncertainty.py [--time 150] [--members 3]
        [--shallow-members 32] [--epochs 200]

Data: ``../shared/data/acac/train_300K.xyz`` (500 structures at 300 K),
shuffled with seed 0: 400 train, 50 calibration (the validation set), 50
held out. The file has no other structures, so the held-out 50 are kept out
of training to score the uncertainty at 300 K (against their reference
energies). "Harder" structures are the held-out ones with every Cartesian
coordinate displaced by a Gaussian of 0.02, 0.04 and 0.08 Å: there is no
reference energy for them (a Taylor expansion from the reference forces is
off by ~1 eV at 0.04 Å), so only their mean sigma is compared with 300 K.

Prints, for LLPR, for a shallow ensemble (``--shallow-members`` last layers
drawn from LLPR's posterior and fine-tuned with the Gaussian NLL for
``--epochs`` steps, same model) and for a deep ensemble of ``--members`` gnn
models trained for the same time each: mean sigma, RMSE, Spearman(|error|,
sigma), RMS of error/sigma, miscalibration area and NLL at 300 K; the ratio
of mean sigma on each displaced set to 300 K; the cost of LLPR against
training and against exported inference (energy + forces, one structure per
call, with and without energy_uncertainty per atom), and what the ensemble
costs.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time

import ase.io
import numpy as np
import torch


ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA = os.environ.get(
    "ACAC_300K",
    os.path.join(os.path.dirname(ROOT), "shared", "data", "acac", "train_300K.xyz"),
)


def options(train: str, validation: str, seconds: float, seed: int) -> dict:
    return {
        "seed": seed,
        "base_precision": 64,
        "architecture": {
            "name": "gnn",
            "model": {"cutoff": 5.0},
            "training": {
                "num_epochs": 100000,
                "max_time": seconds,
                "batch_size": 8,
                "log_interval": 5,
                "checkpoint_interval": 100000,
            },
        },
        "training_set": {
            "systems": {"read_from": train, "length_unit": "angstrom"},
            "targets": {"energy": {"key": "energy", "unit": "eV", "forces": True}},
        },
        "validation_set": {
            "systems": {"read_from": validation, "length_unit": "angstrom"},
            "targets": {"energy": {"key": "energy", "unit": "eV", "forces": True}},
        },
        "test_set": 0.0,
        "loss": {"energy": {"weight": 1.0, "forces": {"weight": 100.0}}},
    }


def train_model(folder: str, train: str, val: str, seconds: float, seed: int):
    import yaml

    from atomtrain.cli import main

    path = os.path.join(folder, f"options_{seed}.yaml")
    with open(path, "w") as f:
        yaml.safe_dump(options(train, val, seconds, seed), f)
    start = time.perf_counter()
    cwd = os.getcwd()
    run = os.path.join(folder, f"run_{seed}")
    os.makedirs(run, exist_ok=True)
    os.chdir(run)
    try:
        assert main(["train", path]) == 0
    finally:
        os.chdir(cwd)
    return os.path.join(run, "model.ckpt"), time.perf_counter() - start


def load_model(path: str):
    """The export-ready model of a checkpoint (best validated weights)."""
    from atomtrain.architectures.registry import import_architecture
    from atomtrain.training.checkpoints import read_checkpoint

    checkpoint = read_checkpoint(path)
    architecture = import_architecture(checkpoint["architecture_name"])
    return architecture.__model__.load_checkpoint(checkpoint, "export").eval()


def read(path: str):
    from atomtrain.data.dataset import read_dataset
    from atomtrain.options.expand import expand_dataset
    from atomtrain.options.schema import DatasetSection
    from atomtrain.options.validation import validate

    targets = {"energy": {"key": "energy", "unit": "eV", "forces": True}}
    section = expand_dataset({"systems": path, "targets": targets}, "data")
    section = validate(DatasetSection, section).model_dump()
    return list(read_dataset(section, {})[0])


def displaced(structures, amplitude: float, seed: int):
    """Copies with every coordinate displaced by N(0, amplitude^2), unlabelled."""
    from atomtrain.testing.fixtures import fresh

    generator = torch.Generator().manual_seed(seed)
    out = []
    for s in structures:
        d = torch.randn(s.positions.shape, generator=generator, dtype=torch.float64)
        copy = fresh(s, positions=s.positions + d * amplitude)
        copy.targets, copy.forces = {}, {}
        out.append(copy)
    return out


def outputs_of(model, structures, names, kind="system"):
    """Requested outputs (float64, no gradients) of an in-memory model."""
    from metatomic.torch import ModelOutput

    from atomtrain.data.systems import compute_neighbors, make_system
    from atomtrain.testing.fixtures import fresh

    requests = model.requested_neighbor_lists()
    structures = [fresh(s) for s in structures]
    compute_neighbors(structures, requests)
    systems = [make_system(s, requests, torch.float64, "cpu")[0] for s in structures]
    with torch.no_grad():
        out = model(systems, {n: ModelOutput(sample_kind=kind) for n in names}, None)
    return {n: out[n].block().values for n in names}


def figures(model, held, harder: dict) -> dict:
    """Calibration figures at 300 K, and mean sigma ratios of the harder sets."""
    from atomtrain.uncertainty import metrics

    out = outputs_of(model, held, ["energy", "energy_uncertainty"])
    reference = torch.stack([s.targets["energy"].reshape(-1) for s in held])
    error = (out["energy"] - reference).reshape(-1)
    sigma = out["energy_uncertainty"].reshape(-1)
    result = {
        "300 K mean sigma (meV)": 1000 * float(sigma.mean()),
        "300 K RMSE (meV)": 1000 * float(error.square().mean().sqrt()),
        **{
            f"300 K {k}": v for k, v in metrics.calibration_report(error, sigma).items()
        },
    }
    for label, structures in harder.items():
        other = outputs_of(model, structures, ["energy_uncertainty"])
        ratio = float(other["energy_uncertainty"].mean() / sigma.mean())
        result[f"mean sigma {label} / 300 K"] = ratio
    return result


def inference_seconds(paths: dict, structures, rounds: int = 7) -> dict:
    """Seconds per structure for energy + forces (and ``names``, per atom) of
    each exported model ``paths[label] = (path, names)``, one structure per
    call as in an MD engine; the models take turns and the best round counts,
    so that other work on the machine hurts them alike."""
    from metatomic.torch import (
        ModelEvaluationOptions,
        ModelOutput,
        load_atomistic_model,
    )

    from atomtrain.data.systems import compute_neighbors, make_system
    from atomtrain.testing.fixtures import fresh

    runs = {}
    for label, (path, names) in paths.items():
        model = load_atomistic_model(path)
        outputs = {"energy": ModelOutput(sample_kind="system")}
        outputs.update({n: ModelOutput(sample_kind="atom") for n in names})
        options = ModelEvaluationOptions(length_unit="angstrom", outputs=outputs)
        runs[label] = (model, options)
    best = {label: float("inf") for label in paths}
    for _ in range(rounds):
        for label, (model, options) in runs.items():
            requests = model.requested_neighbor_lists()
            start = time.perf_counter()
            for s in structures:
                s = fresh(s)
                compute_neighbors([s], requests)
                system, positions = make_system(s, requests, torch.float64, "cpu", True)
                result = model([system], options, check_consistency=False)
                energy = result["energy"].block().values.sum()
                torch.autograd.grad(energy, positions)
            seconds = (time.perf_counter() - start) / len(structures)
            best[label] = min(best[label], seconds)
    return best


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--time", type=float, default=150.0, help="s per model")
    parser.add_argument("--members", type=int, default=3, help="deep ensemble")
    parser.add_argument("--shallow-members", type=int, default=32)
    parser.add_argument("--epochs", type=int, default=200, help="shallow: NLL steps")
    parser.add_argument("--json", default=None)
    parser.add_argument(
        "--checkpoints",
        nargs="+",
        default=None,
        help="use these gnn checkpoints (trained on the same 400, e.g. the "
        "run_N/model.ckpt of an earlier run) instead of training: the first "
        "for LLPR, all of them as the deep ensemble",
    )
    args = parser.parse_args()
    torch.set_num_threads(1)

    from atomtrain.export import save_exported
    from atomtrain.uncertainty.ensembles import DeepEnsemble, fit_scale
    from atomtrain.uncertainty.export import (
        calibrate,
        calibrate_llpr,
        describe,
        export_ensemble,
        export_uncertainty,
    )

    frames = ase.io.read(DATA, ":")
    order = np.random.default_rng(0).permutation(len(frames))
    folder = tempfile.mkdtemp(prefix="atomtrain-uq-")
    paths = {}
    for name, part in (("train", order[:400]), ("val", order[400:450]),
                       ("held", order[450:])):  # fmt: skip
        paths[name] = os.path.join(folder, f"{name}.xyz")
        ase.io.write(paths[name], [frames[i] for i in part], format="extxyz")
    train, val, held = (read(paths[k]) for k in ("train", "val", "held"))
    harder = {
        f"displaced {a} Å": displaced(held, a, seed=1) for a in (0.02, 0.04, 0.08)
    }

    if args.checkpoints is None:
        checkpoint, train_seconds = train_model(
            folder, paths["train"], paths["val"], args.time, 0
        )
    else:
        checkpoint, train_seconds = args.checkpoints[0], float("nan")
        args.members = len(args.checkpoints)
    model = load_model(checkpoint)
    start = time.perf_counter()
    wrapper, fitted = calibrate_llpr(
        model, train, val, torch.float64, torch.device("cpu")
    )
    llpr_seconds = time.perf_counter() - start
    report = {"LLPR": figures(wrapper, held, harder)}
    plain_path = os.path.join(folder, "plain.pt")
    llpr_path = os.path.join(folder, "llpr.pt")
    save_exported(model.export(), plain_path)
    save_exported(export_uncertainty(wrapper, description=describe(fitted, 32)),
                  llpr_path)  # fmt: skip
    start = time.perf_counter()
    section = {"method": "shallow_ensemble", "epochs": args.epochs,
               "ensemble_members": args.shallow_members}  # fmt: skip
    shallow, ensembles = calibrate(
        model, train, val, torch.float64, torch.device("cpu"), section
    )
    shallow_seconds = time.perf_counter() - start
    report["shallow ensemble"] = figures(shallow, held, harder)
    shallow_path = os.path.join(folder, "shallow.pt")
    description = describe(ensembles, args.shallow_members)
    save_exported(export_uncertainty(shallow, description=description), shallow_path)
    timing = held[:20]
    timed = inference_seconds(
        {
            "plain": (plain_path, []),
            "llpr": (llpr_path, ["energy_uncertainty"]),
            "shallow": (shallow_path, ["energy_uncertainty"]),
        },
        timing,
    )
    plain, with_sigma = timed["plain"], timed["llpr"]
    energy = ensembles["energy"]
    report["shallow ensemble cost"] = {
        "members": args.shallow_members,
        "kept epoch": energy.epoch,
        "validation NLL of the LLPR draws": energy.nll_initial,
        "validation NLL after fine-tuning": energy.nll_after,
        "calibration incl. fine-tuning (s)": shallow_seconds,
        "calibration / training": shallow_seconds / train_seconds,
        "inference with energy_uncertainty per atom (ms/structure)": 1000
        * timed["shallow"],
        "inference / plain model": timed["shallow"] / plain,
    }
    report["LLPR cost"] = {
        "training (s)": train_seconds,
        "calibration (s)": llpr_seconds,
        "calibration / training": llpr_seconds / train_seconds,
        "inference energy+forces (ms/structure)": 1000 * plain,
        "with energy_uncertainty per atom (ms/structure)": 1000 * with_sigma,
        "inference overhead": with_sigma / plain - 1,
    }
    regularizer = fitted["energy"].regularizer
    report["LLPR"]["regularizer"] = regularizer
    report["LLPR"]["alpha"] = float(fitted["energy"].alpha[0])
    print(json.dumps(report, indent=2), flush=True)

    if args.members > 1:
        members, seconds = [model], train_seconds
        for seed in range(1, args.members):
            if args.checkpoints is None:
                path, spent = train_model(
                    folder, paths["train"], paths["val"], args.time, seed
                )
            else:
                path, spent = args.checkpoints[seed], float("nan")
            members.append(load_model(path))
            seconds += spent
        raw = DeepEnsemble(members, {"energy": 1.0})
        out = outputs_of(raw, val, ["energy", "energy_uncertainty"])
        reference = torch.stack([s.targets["energy"].reshape(-1) for s in val])
        scale = fit_scale(out["energy"] - reference, out["energy_uncertainty"])
        ensemble = DeepEnsemble(members, {"energy": scale})
        report["deep ensemble"] = figures(ensemble, held, harder)
        ensemble_path = os.path.join(folder, "ensemble.pt")
        save_exported(export_ensemble(ensemble), ensemble_path)
        timed = inference_seconds(
            {
                "plain": (plain_path, []),
                "ensemble": (ensemble_path, ["energy_uncertainty"]),
            },
            timing,
        )
        report["deep ensemble cost"] = {
            "members": args.members,
            "training (s)": seconds,
            "scale": scale,
            "inference with energy_uncertainty per atom (ms/structure)": 1000
            * timed["ensemble"],
            "inference / plain model": timed["ensemble"] / timed["plain"],
        }
        print(json.dumps({k: report[k] for k in ("deep ensemble",
                          "deep ensemble cost")}, indent=2))  # fmt: skip
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
