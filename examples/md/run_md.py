"""Molecular dynamics with an exported atomtrain model in ASE.

    python examples/md/run_md.py [--model model.pt] [--structure file.xyz]
        [--steps 1000] [--timestep 0.5] [--temperature 300]
        [--ensemble nve|langevin]
        [--force-uncertainty-threshold 0.5 [--on-uncertainty warn|stop]]

Loads ``model.pt`` (a metatomic ``AtomisticModel``, as written by
``atomtrain train`` or ``atomtrain export``) into ``metatomic_ase``'s
``MetatomicCalculator``, draws Maxwell-Boltzmann velocities at
``--temperature`` (seeded, centre-of-mass motion and, for molecules, rotation
removed) and runs velocity Verlet (NVE) or Langevin (NVT) dynamics.

With a model that has uncertainties (``atomtrain calibrate``, or ``uncertainty:
true`` in the training options) and ``--force-uncertainty-threshold`` (eV/Å),
it checks the largest per-atom force uncertainty (spread of the
``energy_ensemble`` members' forces) every ``--uncertainty-interval`` steps and
warns, or stops the run, when it crosses the threshold: the dynamics has gone
where the model was not trained.

It prints the total energy drift per atom (the check that forces are minus the
gradient of the energy and the time step is small enough: in NVE it should stay
well below 1 meV/atom), the temperature and the steps per second.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import warnings
from dataclasses import asdict, dataclass, field
from typing import Callable, List, Optional, Sequence

import ase
import ase.io
import numpy as np
from ase import units
from ase.calculators.calculator import Calculator
from ase.md import velocitydistribution
from ase.md.langevin import Langevin
from ase.md.velocitydistribution import Stationary, ZeroRotation
from ase.md.verlet import VelocityVerlet


HERE = os.path.dirname(os.path.abspath(__file__))
ETHANOL = os.path.join(os.path.dirname(HERE), "ethanol")
DEFAULT_MODEL = os.path.join(ETHANOL, "model.pt")
DEFAULT_STRUCTURE = os.path.join(ETHANOL, "ethanol.xyz")


@dataclass
class MDResult:
    """What a run measured; energies in eV, per-atom figures in meV/atom."""

    ensemble: str
    n_atoms: int
    steps: int
    timestep_fs: float
    initial_temperature_K: float
    mean_temperature_K: float
    final_temperature_K: float
    drift_meV_per_atom: float
    """(E_total at the end - at the start) / N."""
    max_deviation_meV_per_atom: float
    """max over steps of |E_total - E_total at the start| / N."""
    drift_rate_meV_per_atom_per_ps: float
    """Slope of a straight-line fit of E_total(t) / N."""
    steps_per_s: float
    wall_s: float
    total_energy_eV: List[float] = field(repr=False)
    temperature_K: List[float] = field(repr=False)
    max_force_uncertainty_eV_per_A: float = float("nan")
    """Largest per-atom force uncertainty seen (when monitored)."""
    stopped_at_step: int = -1
    """Step at which the uncertainty stopped the run (-1: it did not)."""


def calculator(
    model: str, device: str = "cpu", extensions: Optional[str] = None
) -> Calculator:
    """The ASE calculator of an exported model (energy, forces by autograd)."""
    # metatomic_ase is the current home of the calculator; the old
    # metatomic.torch.ase_calculator path is deprecated
    from metatomic_ase import MetatomicCalculator

    kwargs = {"device": device}
    if extensions is not None:
        kwargs["extensions_directory"] = extensions
    return MetatomicCalculator(model, **kwargs)


def initial_velocities(atoms: ase.Atoms, temperature: float, seed: int) -> None:
    """Maxwell-Boltzmann velocities reproducible from ``seed``, without
    centre-of-mass motion (nor rotation, for a molecule: a free rotation carries
    energy but tests nothing), rescaled so that the run starts at exactly
    ``temperature`` K (ASE's temperature, 3N degrees of freedom)."""
    rng = np.random.default_rng(seed)
    # thermalize_momenta is ASE >= 3.29's name; MaxwellBoltzmannDistribution
    # (deprecated there) is the same function in older versions
    thermalize = getattr(velocitydistribution, "thermalize_momenta", None)
    if thermalize is not None:
        thermalize(atoms, temperature, rng=rng)
    else:
        velocitydistribution.MaxwellBoltzmannDistribution(
            atoms, temperature_K=temperature, rng=rng
        )
    Stationary(atoms)
    if not atoms.pbc.any():
        ZeroRotation(atoms)
    current = atoms.get_temperature()
    if temperature > 0 and current > 0:
        atoms.set_momenta(atoms.get_momenta() * np.sqrt(temperature / current))


def run_md(
    atoms: ase.Atoms,
    steps: int,
    timestep: float = 0.5,
    temperature: float = 300.0,
    ensemble: str = "nve",
    friction: float = 0.01,
    seed: int = 0,
    log_interval: int = 0,
    velocities: bool = True,
    uncertainty: Optional[Callable[[ase.Atoms], np.ndarray]] = None,
    threshold: Optional[float] = None,
    on_uncertainty: str = "warn",
    uncertainty_interval: int = 10,
) -> MDResult:
    """Run ``steps`` steps of MD on ``atoms`` (its calculator attached) and
    measure energy conservation, temperature and speed.

    ``timestep`` in fs, ``temperature`` in K, ``friction`` in 1/fs (Langevin).
    With ``velocities=False`` the velocities already on ``atoms`` are kept.
    ``uncertainty(atoms)`` (per-atom force uncertainties, eV/Å) is checked
    against ``threshold`` every ``uncertainty_interval`` steps: ``warn`` prints
    a warning, ``stop`` ends the run there.
    """
    if ensemble not in ("nve", "langevin"):
        raise ValueError(f"unknown ensemble '{ensemble}': use 'nve' or 'langevin'")
    if velocities:
        initial_velocities(atoms, temperature, seed)
    dt = timestep * units.fs
    if ensemble == "nve":
        dynamics = VelocityVerlet(atoms, timestep=dt)
    else:
        dynamics = Langevin(
            atoms,
            timestep=dt,
            temperature_K=temperature,
            friction=friction / units.fs,
            # fixcm=True is deprecated in ASE >= 3.28 (wrong NVT sampling for
            # small systems); the centre of mass may drift slowly instead
            fixcm=False,
            rng=np.random.default_rng(seed + 1),
        )

    n = len(atoms)
    energies: List[float] = []
    temperatures: List[float] = []

    def record() -> None:
        # ASE calls observers after each step and, in recent versions, before
        # the first one: keep one entry per step, whoever calls
        step = dynamics.nsteps
        if step != len(energies):
            return
        # the calculator cached the energy with the forces: reading it is free
        energies.append(atoms.get_potential_energy() + atoms.get_kinetic_energy())
        temperatures.append(atoms.get_temperature())
        if log_interval and step % log_interval == 0:
            drift = 1000 * (energies[-1] - energies[0]) / n
            print(
                f"step {step:6d}  t {step * timestep:9.1f} fs  "
                f"E_tot {energies[-1]:14.6f} eV  drift {drift:+9.4f} meV/atom  "
                f"T {temperatures[-1]:7.1f} K",
                flush=True,
            )

    worst = [float("nan")]
    stopped = [-1]

    class UncertaintyStop(Exception):
        pass

    def check_uncertainty() -> None:
        step = dynamics.nsteps
        if uncertainty is None or threshold is None or step % uncertainty_interval:
            return
        per_atom = uncertainty(atoms)
        largest = float(per_atom.max())
        worst[0] = largest if np.isnan(worst[0]) else max(worst[0], largest)
        if largest <= threshold:
            return
        atom = int(per_atom.argmax())
        message = (
            f"step {step}: force uncertainty {largest:.3f} eV/Å on atom {atom} "
            f"is above the threshold of {threshold} eV/Å"
        )
        if on_uncertainty == "stop":
            stopped[0] = step
            print(f"{message}: stopping", flush=True)
            raise UncertaintyStop()
        warnings.warn(message, stacklevel=1)

    record()  # the first evaluation, outside the timing: it also warms the model up
    dynamics.attach(record, interval=1)
    dynamics.attach(check_uncertainty, interval=1)
    start = time.perf_counter()
    try:
        dynamics.run(steps)
    except UncertaintyStop:
        steps = len(energies) - 1
    wall = time.perf_counter() - start

    assert len(energies) == steps + 1, (len(energies), steps)
    energy = np.asarray(energies)
    time_ps = np.arange(len(energy)) * timestep / 1000
    per_atom_meV = 1000 * (energy - energy[0]) / n
    slope = float(np.polyfit(time_ps, per_atom_meV, 1)[0]) if steps > 0 else 0.0
    return MDResult(
        ensemble=ensemble,
        n_atoms=n,
        steps=steps,
        timestep_fs=timestep,
        initial_temperature_K=temperatures[0],
        mean_temperature_K=float(np.mean(temperatures[1:] or temperatures)),
        final_temperature_K=temperatures[-1],
        drift_meV_per_atom=float(per_atom_meV[-1]),
        max_deviation_meV_per_atom=float(np.abs(per_atom_meV).max()),
        drift_rate_meV_per_atom_per_ps=slope,
        steps_per_s=steps / wall if wall > 0 else float("inf"),
        wall_s=wall,
        max_force_uncertainty_eV_per_A=worst[0],
        stopped_at_step=stopped[0],
        total_energy_eV=energies,
        temperature_K=temperatures,
    )


def summary(result: MDResult) -> str:
    """A few lines that say what the run measured."""
    scalars = {k: v for k, v in asdict(result).items() if not isinstance(v, list)}
    width = max(len(k) for k in scalars)
    lines = [
        f"{k:<{width}}  {v:.4g}" if isinstance(v, float) else f"{k:<{width}}  {v}"
        for k, v in scalars.items()
    ]
    return "\n".join(lines)


def parse_args(argv: Optional[Sequence[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--model", default=DEFAULT_MODEL, help="exported model (default: %(default)s)"
    )
    parser.add_argument(
        "--structure",
        default=DEFAULT_STRUCTURE,
        help="any file ASE reads; the frame --index is used (default: %(default)s)",
    )
    parser.add_argument("--index", type=int, default=0, help="frame (default: 0)")
    parser.add_argument("--steps", type=int, default=1000, help="default: 1000")
    parser.add_argument("--timestep", type=float, default=0.5, help="fs (default: 0.5)")
    parser.add_argument(
        "--temperature",
        type=float,
        default=300.0,
        help="K: initial velocities and Langevin thermostat (default: 300)",
    )
    parser.add_argument("--ensemble", choices=("nve", "langevin"), default="nve")
    parser.add_argument(
        "--friction", type=float, default=0.01, help="Langevin, 1/fs (default: 0.01)"
    )
    parser.add_argument("--seed", type=int, default=0, help="default: 0")
    parser.add_argument("--device", default="cpu", help="torch device (default: cpu)")
    parser.add_argument(
        "--extensions", help="folder of compiled extensions the model needs, if any"
    )
    parser.add_argument(
        "--log-interval", type=int, default=100, help="steps (0: quiet; default 100)"
    )
    parser.add_argument("--output", help="write the final structure to this file")
    parser.add_argument(
        "--force-uncertainty-threshold",
        type=float,
        help="eV/Å: check the models' force uncertainty against it (needs a "
        "model with energy_ensemble, from atomtrain calibrate)",
    )
    parser.add_argument(
        "--on-uncertainty",
        choices=("warn", "stop"),
        default="warn",
        help="above the threshold: warn and go on, or stop (default: warn)",
    )
    parser.add_argument(
        "--uncertainty-interval",
        type=int,
        default=10,
        help="steps between uncertainty checks (default: 10)",
    )
    return parser.parse_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    if not os.path.exists(args.model):
        print(
            f"model not found: {args.model}\nrun `make example` (it writes "
            "examples/ethanol/model.pt) or pass --model",
            file=sys.stderr,
        )
        return 1
    atoms = ase.io.read(args.structure, index=args.index)
    atoms.calc = calculator(args.model, args.device, args.extensions)
    print(
        f"{args.ensemble.upper()} MD of {atoms.get_chemical_formula()} "
        f"({len(atoms)} atoms) with {args.model}: {args.steps} steps of "
        f"{args.timestep} fs, {args.temperature} K",
        flush=True,
    )
    monitor = None
    if args.force_uncertainty_threshold is not None:
        sys.path.insert(0, HERE)
        from uncertainty import ForceUncertainty

        monitor = ForceUncertainty(args.model, args.device)
    result = run_md(
        atoms,
        steps=args.steps,
        timestep=args.timestep,
        temperature=args.temperature,
        ensemble=args.ensemble,
        friction=args.friction,
        seed=args.seed,
        log_interval=args.log_interval,
        uncertainty=monitor,
        threshold=args.force_uncertainty_threshold,
        on_uncertainty=args.on_uncertainty,
        uncertainty_interval=args.uncertainty_interval,
    )
    print(summary(result))
    if args.ensemble == "langevin":
        print("(Langevin exchanges energy with the bath: the drift is not a check)")
    if args.output:
        ase.io.write(args.output, atoms)
    return 0


if __name__ == "__main__":
    sys.exit(main())
