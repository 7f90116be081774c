"""Long-range electrostatics: learnt latent charges in a Coulomb energy.

A short-range model sees nothing beyond its cutoff, but ionic and polar systems
have energy differences that come from far away (the 1/r tail of charges and
dipoles). With ``long_range: {enable: true}`` a model predicts one latent
charge ``q_i`` per atom from its invariant features and adds the Coulomb energy
of these charges,

    E = 1/2 sum_{i != j, images} q_i q_j e² / (4 π ε0 r_ij),

to its energy targets. The charges are not fitted to any reference charges:
they are whatever makes the total energy right. The sum is computed by
`torch-pme <https://lab-cosmo.github.io/torch-pme/>`_ (``pip install
'atomtrain[long-range]'``):

- periodic cells with up to ``ewald_max_atoms`` atoms: an Ewald sum;
- larger periodic cells: particle-particle particle-mesh (P3M), which scales
  as N log N;
- non-periodic structures (molecules, clusters): the direct sum over all pairs.

Both periodic methods split 1/r with Gaussians of width ``smearing``: the
short-range part is summed over a neighbour list of radius ``cutoff``, the rest
in reciprocal space. Structures periodic in some directions only are refused.
Per-atom energies are ``q_i V_i`` (``V_i`` half the potential that the other
charges create at atom ``i``), so they add up to the total.
"""

from typing import List, Mapping, Optional

import torch
from metatomic.torch import NeighborListOptions, System

from atomtrain.data.info import DatasetInfo
from atomtrain.errors import UserError
from atomtrain.nn.long_range_hypers import long_range_defaults
from atomtrain.nn.terms import EnergyTerm


# e² / (4 π ε0) in eV Å (CODATA 2018), the unit of every energy in a model
COULOMB_EV_ANGSTROM = 14.3996454784936


def long_range_hypers(hypers: Mapping) -> Optional[Mapping]:
    """The ``long_range`` section of model ``hypers`` when it is enabled (None
    otherwise, also for checkpoints written before the hyper existed)."""
    section = hypers.get("long_range")
    if section is None or not section.get("enable", False):
        return None
    return section


def _import_torchpme():
    try:
        import torchpme
    except ImportError:
        raise UserError(
            "long_range: {enable: true} needs the torch-pme package, which is not "
            "installed. Install it with pip install 'atomtrain[long-range]' (or "
            "pip install torch-pme), or set long_range.enable to false."
        ) from None
    return torchpme


class LongRangeElectrostatics(EnergyTerm):
    """Per-atom Coulomb energies of latent charges read out of scalar features.

    ``model_lists`` are the neighbour lists the model already requests; the
    real-space part reuses one that is a half list of the same cutoff, else it
    requests its own (:meth:`requested_neighbor_lists`).
    """

    def __init__(
        self,
        section: Mapping,
        n_features: int,
        dataset_info: DatasetInfo,
        model_lists: List[NeighborListOptions],
    ):
        torchpme = _import_torchpme()
        section = {**long_range_defaults(), **section}  # plain dicts may leave keys out
        cutoff = float(section["cutoff"])
        options = NeighborListOptions(cutoff=cutoff, full_list=False, strict=False)
        reused = any(float(o.cutoff) == cutoff and not o.full_list for o in model_lists)
        super().__init__(dataset_info, options, not reused)
        smearing = float(section["smearing"])
        self.cutoff = cutoff
        self.ewald_max_atoms = int(section["ewald_max_atoms"])
        self.prefactor = COULOMB_EV_ANGSTROM
        self.charges = torch.nn.Linear(n_features, 1)
        with torch.no_grad():
            # small charges at the start: training begins close to the
            # short-range model (zero charges would have zero gradient)
            self.charges.weight.mul_(0.1)
            self.charges.bias.zero_()
        self.ewald = torchpme.EwaldCalculator(
            torchpme.CoulombPotential(smearing=smearing),
            lr_wavelength=float(section["lr_wavelength"]),
        )
        self.p3m = torchpme.P3MCalculator(
            torchpme.CoulombPotential(smearing=smearing),
            mesh_spacing=float(section["mesh_spacing"]),
        )
        self.direct = torchpme.Calculator(torchpme.CoulombPotential(smearing=None))

    def atomic_energies(
        self, systems: List[System], features: torch.Tensor
    ) -> torch.Tensor:
        """``q_i V_i`` in eV, ``(n_atoms, 1)``, for the charges read out of
        ``features``, the scalar features of the atoms of ``systems`` in order."""
        return self.coulomb_energies(systems, self.charges(features))

    def coulomb_energies(
        self, systems: List[System], charges: torch.Tensor
    ) -> torch.Tensor:
        """``q_i V_i`` in eV, ``(n_atoms, 1)``, for ``charges`` ``(n_atoms, 1)``."""
        energies: List[torch.Tensor] = []
        start = 0
        for system in systems:
            n_atoms = len(system)
            q = charges[start : start + n_atoms]
            start += n_atoms
            potential = self.potential(system, q)
            energies.append(self.prefactor * q * potential)
        return torch.cat(energies)

    def potential(self, system: System, q: torch.Tensor) -> torch.Tensor:
        """Half the electrostatic potential of ``q`` at every atom of ``system``
        (charge / Å)."""
        positions, cell = system.positions, system.cell
        if bool(torch.all(system.pbc)):
            neighbors = system.get_neighbor_list(self.options)
            pairs = neighbors.samples.values[:, :2].to(torch.long)
            distances = torch.linalg.vector_norm(neighbors.values.reshape(-1, 3), dim=1)
            inside = distances <= self.cutoff  # lists that are not strict
            pairs, distances = pairs[inside], distances[inside]
            if len(system) <= self.ewald_max_atoms:
                return self.ewald(q, cell, positions, pairs, distances)
            return self.p3m(q, cell, positions, pairs, distances)
        if bool(torch.any(system.pbc)):
            raise ValueError(
                "long-range electrostatics handles structures periodic in all three "
                "directions or in none; this one is periodic in some only"
            )
        n_atoms = len(system)
        pairs = torch.triu_indices(n_atoms, n_atoms, 1, device=positions.device).T
        distances = torch.linalg.vector_norm(
            positions[pairs[:, 1]] - positions[pairs[:, 0]], dim=1
        )
        return self.direct(q, cell, positions, pairs, distances)


def make_long_range(
    hypers: Mapping,
    n_features: int,
    dataset_info: DatasetInfo,
    model_lists: List[NeighborListOptions],
) -> Optional[LongRangeElectrostatics]:
    """The electrostatics of a model whose hypers enable ``long_range`` (else
    None)."""
    section = long_range_hypers(hypers)
    if section is None:
        return None
    return LongRangeElectrostatics(section, n_features, dataset_info, model_lists)
