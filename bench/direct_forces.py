"""Direct (non-conservative) forces: inference speed-up and NVE energy drift.

    python bench/direct_forces.py [--architecture gnn] [--train-time 600]
        [--model model.pt] [--md-steps 400] [--inner 4]

1. Unless ``--model`` gives an exported model with a ``non_conservative_force``
   output, trains one through the Python API (``atomtrain.api.train``) on the
   first ``--frames`` frames of the DeePMD water set (192 atoms, periodic) with
   an energy target (with forces) and ``non_conservative_force: {key: forces}``,
   for ``--train-time`` seconds (``max_time``) in float32.
2. Speed: energy + forces of the first water frame and of its 2x2x2 supercell
   (1,536 atoms) through ``metatomic_ase.MetatomicCalculator``, conservative
   (forces by a backward pass) and ``non_conservative="forces"`` (median ms of
   ``--repeats`` calls on rattled positions, ``time_inference`` of
   ``bench/soap_bpnn.py``). For periodic cells the calculator computes the
   stress with the forces, by a backward pass unless the model also offers
   ``non_conservative_stress``, so there it saves nothing; the exported model
   called directly (energy + forces by autograd against energy + direct
   forces without a graph, the fastest of ``--repeats`` calls in turn) shows
   what an engine that needs no stress gains. ``--md-steps 0`` stops here.
   ``--untrained`` times an untrained model that also has a direct stress
   (``non_conservative_stress``): then ASE uses ``non_conservative=True``.
3. NVE molecular dynamics of the 192-atom frame from 300 K for ``--md-steps``
   steps of ``--timestep`` fs with velocity Verlet driven by (a) conservative
   forces, (b) direct forces alone, (c) a multiple-time-step (RESPA) mix: inner
   velocity-Verlet steps with the direct forces, and every ``--inner`` steps a
   kick by the difference between conservative and direct forces (Tuckerman,
   Berne and Martyna 1992; the scheme of Bigi, Langer and Ceriotti 2024 for
   direct forces). The total energy (the model's energy plus the kinetic
   energy) is recorded at every outer step; its drift per atom and the force
   evaluations per femtosecond are printed.

Writes ``bench/results/direct_forces.json`` (git-ignored) with the load
average before and after: compare timings only on an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

import ase
import ase.io
import numpy as np
from ase import units
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
from run_md import initial_velocities, run_md  # noqa: E402


NC = "non_conservative_force"
NCS = "non_conservative_stress"


def train_model(args, folder: str) -> str:
    """Train ``--architecture`` on water with a direct-force head; the path of
    the exported model."""
    from atomtrain.api.training import train

    frames = ase.io.read(DATASETS["water"]["path"], f":{args.frames}")
    data = os.path.join(folder, "water.xyz")
    ase.io.write(data, frames)
    options = {
        "architecture": {
            "name": args.architecture,
            "training": {
                "num_epochs": 1000,
                "max_time": args.train_time,
                "batch_size": 2,
                "log_interval": 5,
            },
        },
        "training_set": {
            "systems": data,
            "targets": {
                "energy": {"key": "energy", "unit": "eV", "forces": {"key": "forces"}},
                NC: {"key": "forces"},
            },
        },
        "validation_set": 0.1,
        "test_set": 0.0,
        "seed": 0,
    }
    result = train(options, output_dir=os.path.join(folder, "run"), copy_to=None)
    print("trained:", result.metrics, flush=True)
    return result.exported


def untrained_model(args, folder: str) -> str:
    """An untrained ``--architecture`` model for H and O with energy, direct
    forces and direct stress outputs, exported (timings need no training)."""
    import torch

    from atomtrain.architectures.hypers import defaults_of
    from atomtrain.architectures.registry import (
        import_architecture,
        import_documentation,
    )
    from atomtrain.data.info import DatasetInfo, TargetInfo
    from atomtrain.export import save_exported

    targets = {
        "energy": TargetInfo("energy", gradients=["positions", "strain"]),
        NC: TargetInfo(NC, quantity="force", unit="eV/A", per_atom=True, rank=1),
        NCS: TargetInfo(NCS, quantity="stress", unit="eV/A^3", rank=2),
    }
    documentation = import_documentation(args.architecture)
    hypers = defaults_of(documentation.ModelHypers)
    torch.manual_seed(0)
    model_class = import_architecture(args.architecture).__model__
    model = model_class(hypers, DatasetInfo([1, 8], targets))
    path = os.path.join(folder, "untrained.pt")
    save_exported(model.export(), path)
    return path


def calculator(model: str, direct: bool):
    from metatomic_ase import MetatomicCalculator

    kwargs = {"device": "cpu"}
    if direct:
        kwargs["non_conservative"] = "forces"
    return MetatomicCalculator(model, **kwargs)


def respa(atoms: ase.Atoms, model: str, steps: int, timestep: float, inner: int):
    """Reversible multiple-time-step NVE: per outer step of ``inner *
    timestep`` fs, half a kick by F_cons - F_direct, ``inner`` velocity-Verlet
    steps with F_direct, half a kick again. Returns the total energy (eV) at
    every outer step and the wall time."""
    conservative, direct = calculator(model, False), calculator(model, True)

    def forces(calc):
        atoms.calc = calc
        return atoms.get_forces()

    masses = atoms.get_masses()[:, None]
    dt = timestep * units.fs
    outer_dt = inner * dt
    energies = []
    start = time.perf_counter()
    slow = forces(conservative) - forces(direct)
    fast = forces(direct)
    atoms.calc = conservative
    energies.append(atoms.get_potential_energy() + atoms.get_kinetic_energy())
    for _ in range(steps // inner):
        momenta = atoms.get_momenta() + 0.5 * outer_dt * slow
        for _ in range(inner):
            momenta = momenta + 0.5 * dt * fast
            atoms.set_positions(atoms.get_positions() + dt * momenta / masses)
            atoms.set_momenta(momenta)
            fast = forces(direct)
            momenta = momenta + 0.5 * dt * fast
        slow = forces(conservative) - fast
        momenta = momenta + 0.5 * outer_dt * slow
        atoms.set_momenta(momenta)
        atoms.calc = conservative
        energies.append(atoms.get_potential_energy() + atoms.get_kinetic_energy())
    return np.array(energies), time.perf_counter() - start


def drift_figures(energies: np.ndarray, n_atoms: int, fs_per_record: float) -> dict:
    """Drift (end - start), largest deviation and fitted rate, per atom."""
    per_atom = 1000 * (energies - energies[0]) / n_atoms  # meV/atom
    t_ps = np.arange(len(energies)) * fs_per_record / 1000
    rate = float(np.polyfit(t_ps, per_atom, 1)[0]) if len(energies) > 2 else 0.0
    return {
        "drift_meV_per_atom": round(float(per_atom[-1]), 3),
        "max_deviation_meV_per_atom": round(float(np.abs(per_atom).max()), 3),
        "drift_rate_meV_per_atom_per_ps": round(rate, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--architecture", default="gnn")
    parser.add_argument("--model", help="exported model with non_conservative_force")
    parser.add_argument(
        "--untrained",
        action="store_true",
        help="time an untrained model with direct forces and stress (no MD)",
    )
    parser.add_argument("--frames", type=int, default=64)
    parser.add_argument("--train-time", type=float, default=600.0)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--md-steps", type=int, default=400)
    parser.add_argument("--timestep", type=float, default=0.5)
    parser.add_argument("--inner", type=int, default=4)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    load_before = loadavg()
    folder = tempfile.mkdtemp(prefix="direct-forces-")
    if args.untrained:
        model, args.md_steps = untrained_model(args, folder), 0
    else:
        model = args.model or train_model(args, folder)
    from metatomic.torch import load_atomistic_model

    # with a direct stress too, ASE needs no backward pass on periodic cells
    outputs = load_atomistic_model(model).capabilities().outputs
    mode = True if NCS in outputs else "forces"
    frame = ase.io.read(DATASETS["water"]["path"], 0)
    frame.calc = None

    speed = []
    for replicas in (1, 2):
        atoms = frame.repeat((replicas, replicas, replicas))
        row = {"atoms": len(atoms)}
        for label, direct in (("conservative", False), ("direct", True)):
            atoms.calc = None
            kwargs = {"non_conservative": mode} if direct else {}
            median, _ = time_inference_with(model, atoms, args.repeats, kwargs)
            row[f"{label}_ms"] = round(median, 2)
        row["ase_speed_up"] = round(row["conservative_ms"] / row["direct_ms"], 2)
        fastest = time_model(model, atoms, args.repeats)
        row["model_conservative_min_ms"] = round(fastest["conservative"], 2)
        row["model_direct_min_ms"] = round(fastest["direct"], 2)
        row["model_speed_up"] = round(fastest["conservative"] / fastest["direct"], 2)
        speed.append(row)
        print(row, flush=True)

    md = {}
    n = len(frame)
    if args.md_steps == 0:
        return finish(args, model, speed, md, load_before)
    for label, direct in (("conservative", False), ("direct", True)):
        atoms = frame.copy()
        atoms.calc = calculator(model, direct)
        result = run_md(atoms, args.md_steps, args.timestep, 300.0, seed=0)
        # recorded every step, with the model's energy as the potential energy
        figures = drift_figures(np.array(result.total_energy_eV), n, args.timestep)
        figures["wall_s"] = round(result.wall_s, 1)
        figures["force_calls_per_fs"] = round(1 / args.timestep, 2)
        figures["final_temperature_K"] = round(float(result.final_temperature_K), 1)
        md[label] = figures
        print(label, figures, flush=True)
    atoms = frame.copy()
    initial_velocities(atoms, 300.0, 0)
    energies, wall = respa(atoms, model, args.md_steps, args.timestep, args.inner)
    figures = drift_figures(energies, n, args.inner * args.timestep)
    figures["wall_s"] = round(wall, 1)
    # per outer step: inner direct calls, one conservative call, one direct call
    # at the outer point is shared with the last inner step
    calls = args.inner + 1
    figures["force_calls_per_fs"] = round(calls / (args.inner * args.timestep), 2)
    figures["final_temperature_K"] = round(float(atoms.get_temperature()), 1)
    md[f"mts_{args.inner}"] = figures
    print(f"mts_{args.inner}", figures, flush=True)

    finish(args, model, speed, md, load_before)


def finish(args, model, speed, md, load_before) -> None:
    results = {
        "model": model,
        "architecture": args.architecture,
        "speed": speed,
        "md": md,
        "md_steps": args.md_steps,
        "timestep_fs": args.timestep,
        "environment": environment(load_before),
    }
    write_results(results, os.path.join(RESULTS, "direct_forces.json"))


def time_model(model: str, atoms: ase.Atoms, repeats: int) -> dict:
    """ms per call of the exported model itself (no ASE), in turn: energy and
    forces by a backward pass, then energy and direct forces without one; the
    neighbour lists are computed once, outside the timing."""
    import torch
    from metatomic.torch import (
        ModelEvaluationOptions,
        ModelOutput,
        load_atomistic_model,
        systems_to_torch,
    )
    from vesin.metatomic import compute_requested_neighbors

    loaded = load_atomistic_model(model)
    dtype = getattr(torch, loaded.capabilities().dtype)
    energy = ModelOutput(unit="eV", sample_kind="system")
    options = {
        "conservative": ModelEvaluationOptions(
            length_unit="angstrom", outputs={"energy": energy}
        ),
        "direct": ModelEvaluationOptions(
            length_unit="angstrom",
            outputs={
                "energy": energy,
                NC: ModelOutput(unit="eV/A", sample_kind="atom"),
            },
        ),
    }
    times = {label: [] for label in options}
    for i in range(repeats + 1):
        for label, option in options.items():
            system = systems_to_torch(
                atoms, dtype=dtype, positions_requires_grad=label == "conservative"
            )
            compute_requested_neighbors(system, "angstrom", loaded)
            start = time.perf_counter()
            if label == "conservative":
                result = loaded([system], option, check_consistency=False)
                total = result["energy"].block().values.sum()
                torch.autograd.grad(total, system.positions)
            else:
                with torch.no_grad():
                    loaded([system], option, check_consistency=False)
            if i > 0:
                times[label].append(1000 * (time.perf_counter() - start))
    return {label: min(values) for label, values in times.items()}


def time_inference_with(model, atoms, repeats, kwargs):
    """``time_inference`` of ``bench/soap_bpnn.py`` with calculator options."""
    if not kwargs:
        return time_inference(model, None, atoms, repeats, 1, None)
    from metatomic_ase import MetatomicCalculator

    atoms = atoms.copy()
    atoms.calc = MetatomicCalculator(model, device="cpu", **kwargs)
    atoms.rattle(stdev=1e-3, seed=999)
    atoms.get_forces()
    times = []
    for i in range(repeats):
        atoms.rattle(stdev=1e-3, seed=i)
        start = time.perf_counter()
        atoms.get_forces()
        times.append(time.perf_counter() - start)
    return 1000 * float(np.median(times)), 1000 * min(times)


if __name__ == "__main__":
    main()
