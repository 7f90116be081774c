"""Force uncertainty of an exported model with ``energy_ensemble`` (written by
``atomtrain calibrate`` or ``atomtrain train`` with ``uncertainty: true``).

The members' energies are differentiated one by one: the force uncertainty of
an atom is the norm of the standard deviation over members of its force, in
eV/Å. It costs one backward pass per member, so ``run_md.py`` computes it every
``--uncertainty-interval`` steps only.
"""

from __future__ import annotations

import warnings

import ase
import numpy as np
import torch


class ForceUncertainty:
    """``monitor(atoms)`` -> per-atom force uncertainty (eV/Å)."""

    def __init__(self, path: str, device: str = "cpu"):
        from metatomic.torch import load_atomistic_model
        from vesin.metatomic import neighbor_lists_for_model

        self.model = load_atomistic_model(path).to(device)
        outputs = self.model.capabilities().outputs
        if "energy_ensemble" not in outputs:
            raise ValueError(
                f"{path} has no energy_ensemble output: calibrate it first "
                "(atomtrain calibrate model.ckpt calibration.yaml -o calibrated.pt)"
            )
        self.dtype = getattr(torch, self.model.capabilities().dtype)
        self.device = device
        self.neighbors = neighbor_lists_for_model("angstrom", self.model)

    def __call__(self, atoms: ase.Atoms) -> np.ndarray:
        from metatomic.torch import (
            ModelEvaluationOptions,
            ModelOutput,
            System,
        )

        def tensor(x, dtype):
            return torch.tensor(np.asarray(x), dtype=dtype, device=self.device)

        positions = tensor(atoms.positions, self.dtype).requires_grad_(True)
        system = System(
            types=tensor(atoms.numbers, torch.int32),
            positions=positions,
            cell=tensor(atoms.cell.array, self.dtype),
            pbc=tensor(atoms.pbc, torch.bool),
        )
        for calculator in self.neighbors:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                calculator.add_neighbor_list([system])
        options = ModelEvaluationOptions(
            length_unit="angstrom",
            outputs={"energy_ensemble": ModelOutput(sample_kind="system")},
        )
        members = self.model([system], options, check_consistency=False)
        members = members["energy_ensemble"].block().values.reshape(-1)
        forces = []
        for m in range(members.shape[0]):
            (gradient,) = torch.autograd.grad(
                members[m], positions, retain_graph=m + 1 < members.shape[0]
            )
            forces.append(-gradient.detach())
        spread = torch.stack(forces).std(dim=0)  # (n_atoms, 3)
        return torch.linalg.vector_norm(spread, dim=1).cpu().double().numpy()
