"""Molecular dynamics with an exported model: energy is conserved in NVE.

A short float64 SOAP-BPNN fit of ethanol (about 5 s) is exported, loaded into
``metatomic_ase.MetatomicCalculator`` and run for 1,000 velocity-Verlet steps of
0.5 fs (500 fs) from seeded Maxwell-Boltzmann velocities at 300 K. The total
energy must stay within bounds that a force which is not minus the gradient of
the energy breaks: the same start with the forces scaled by 1.1 is shown to
fail them.

Measured with this fit over seeds 0-4 (9 atoms): |E_end - E_start| 0.004-0.155
meV/atom and max |E(t) - E_start| 0.13-0.40 meV/atom (seed 0: +0.026 and 0.40),
the bounded O(dt^2) oscillation of velocity Verlet's energy (0.10 at 0.25 fs).
Forces scaled by 1.1 conserve 1.1 E_pot + E_kin instead, so E_pot + E_kin
follows a tenth of the potential-energy swings: max deviation 1.6-2.5 meV/atom
within the first 200 steps.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from typing import Tuple

import ase
import ase.io
import numpy as np
import pytest
import torch
from ase import units
from ase.calculators.calculator import Calculator, all_changes
from ase.md.velocitydistribution import Stationary, ZeroRotation
from ase.md.verlet import VelocityVerlet
from test_cli import ETHANOL_TARGETS, RESOURCES, SMALL, write_options

from atomtrain.cli import main


pytest.importorskip("metatomic_ase")
from metatomic_ase import MetatomicCalculator  # noqa: E402


ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLE = os.path.join(ROOT, "examples", "md", "run_md.py")
ETHANOL = os.path.join(RESOURCES, "ethanol_reduced_100.xyz")
STEPS = 1000
TIMESTEP_FS = 0.5
TEMPERATURE_K = 300.0
SEED = 0
# Bounds per atom, about twice the largest value measured for a correct model
# (above) and half the smallest measured with forces 10 % off the gradient. The
# end-to-end drift also catches a slow systematic leak (a non-smooth cutoff, a
# stale neighbour list) that the fluctuation bound would take longer to see.
MAX_DEVIATION_MEV = 0.75
END_DRIFT_MEV = 0.3
BROKEN_STEPS = 200


@pytest.fixture(scope="module")
def model_path(tmp_path_factory) -> str:
    """A float64 model of ethanol, fitted enough to have real bond forces."""
    folder = tmp_path_factory.mktemp("md")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with pytest.MonkeyPatch.context() as patch:
            patch.chdir(folder)
            write_options(
                "options.yaml",
                {"systems": ETHANOL, "targets": ETHANOL_TARGETS},
                epochs=10,
                base_precision=64,
                logging={"plots": False},
            )
            overrides = ["-o", "architecture.training.learning_rate=0.01"]
            assert main(["train", "options.yaml", *SMALL, *overrides]) == 0
    finally:
        torch.set_num_threads(threads)
    return str(folder / "model.pt")


class ScaledForces(Calculator):
    """Energy of ``inner``, forces of ``inner`` times ``factor``: a deliberately
    broken calculator whose forces are not minus the gradient of its energy."""

    implemented_properties = ["energy", "forces"]

    def __init__(self, inner: Calculator, factor: float) -> None:
        super().__init__()
        self.inner, self.factor = inner, factor

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        self.results = {
            "energy": self.inner.get_potential_energy(self.atoms),
            "forces": self.factor * self.inner.get_forces(self.atoms),
        }


def start(calculator: Calculator) -> ase.Atoms:
    """The first ethanol molecule with seeded Maxwell-Boltzmann velocities,
    without translation or rotation, rescaled to start at exactly 300 K."""
    atoms = ase.io.read(ETHANOL, index=0)
    rng = np.random.default_rng(SEED)
    sigma = np.sqrt(atoms.get_masses()[:, None] * units.kB * TEMPERATURE_K)
    atoms.set_momenta(sigma * rng.normal(size=(len(atoms), 3)))
    Stationary(atoms)
    ZeroRotation(atoms)
    scale = np.sqrt(TEMPERATURE_K / atoms.get_temperature())
    atoms.set_momenta(scale * atoms.get_momenta())
    atoms.calc = calculator
    return atoms


def nve(atoms: ase.Atoms, steps: int) -> Tuple[np.ndarray, np.ndarray]:
    """Total energy (eV) and temperature (K) after each of ``steps`` NVE steps,
    the initial state first."""
    energies, temperatures = [], []
    dynamics = VelocityVerlet(atoms, timestep=TIMESTEP_FS * units.fs)

    def record() -> None:
        if dynamics.nsteps == len(energies):  # once per step, ASE may call twice
            energies.append(atoms.get_potential_energy() + atoms.get_kinetic_energy())
            temperatures.append(atoms.get_temperature())

    record()
    dynamics.attach(record, interval=1)
    dynamics.run(steps)
    return np.array(energies), np.array(temperatures)


def per_atom_mev(energies: np.ndarray, n_atoms: int) -> np.ndarray:
    return 1000 * (energies - energies[0]) / n_atoms


def test_nve_conserves_energy(model_path):
    atoms = start(MetatomicCalculator(model_path, device="cpu"))
    energies, temperatures = nve(atoms, STEPS)
    assert len(energies) == STEPS + 1 and np.isfinite(energies).all()
    # the molecule is alive: hot, not frozen, not exploded
    assert 100 < temperatures.mean() < 600, temperatures.mean()

    deviation = per_atom_mev(energies, len(atoms))
    print(
        f"NVE {STEPS} x {TIMESTEP_FS} fs: end-start {deviation[-1]:+.4f} meV/atom, "
        f"max |dE| {np.abs(deviation).max():.4f} meV/atom, "
        f"<T> {temperatures.mean():.0f} K"
    )
    assert abs(deviation[-1]) < END_DRIFT_MEV, deviation[-1]
    assert np.abs(deviation).max() < MAX_DEVIATION_MEV, np.abs(deviation).max()


def test_wrong_forces_break_the_bound(model_path):
    """Why the bounds are tight enough: forces 10 % too large (not -dE/dx)
    exceed them by a margin within 200 steps, from the same start."""
    inner = MetatomicCalculator(model_path, device="cpu")
    atoms = start(ScaledForces(inner, 1.1))
    energies, _ = nve(atoms, BROKEN_STEPS)
    deviation = np.abs(per_atom_mev(energies, len(atoms))).max()
    print(f"forces x 1.1, {BROKEN_STEPS} steps: max |dE| {deviation:.3f} meV/atom")
    assert deviation > 1.5 * MAX_DEVIATION_MEV, deviation


def test_example_script_runs(model_path, capsys, monkeypatch):
    """examples/md/run_md.py, a few steps of each ensemble."""
    spec = importlib.util.spec_from_file_location("run_md", EXAMPLE)
    run_md = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, run_md)  # for its dataclass
    spec.loader.exec_module(run_md)
    common = ["--model", model_path, "--structure", ETHANOL, "--steps", "20"]
    for ensemble in ("nve", "langevin"):
        assert (
            run_md.main([*common, "--ensemble", ensemble, "--log-interval", "10"]) == 0
        )
        out = capsys.readouterr().out
        assert "drift_meV_per_atom" in out and "steps_per_s" in out
        assert "step     20" in out
