"""ZBL nuclear repulsion: a fixed pair energy added to the learnt energy.

The universal screened Coulomb repulsion of Ziegler, Biersack and Littmark
(*The Stopping and Range of Ions in Solids*, 1985),

    E(r) = Z_i Z_j e² / (4 π ε0 r) φ(r / a),   a = 0.46850 Å / (Z_i^0.23 + Z_j^0.23),
    φ(x) = 0.1818 e^(-3.2 x) + 0.5099 e^(-0.9423 x)
           + 0.2802 e^(-0.4029 x) + 0.02817 e^(-0.2016 x),

is multiplied by a switch that is 1 below ``0.6 r_outer`` and
goes to 0 at ``r_outer = r_cov(Z_i) + r_cov(Z_j)`` (covalent radii of ASE)
with zero first and second derivatives at both ends, so that forces and their
derivatives are continuous. Near equilibrium bond lengths the term is (nearly)
zero; it only acts where atoms come closer than any bond, a region training
data rarely samples, and keeps molecular dynamics from collapsing atoms into
each other there.

Models with ``zbl: true`` hold a :class:`ZblRepulsion`, one of their additive
terms (:mod:`atomtrain.nn.terms`), whose per-atom energies are added to their
energy targets after the composition baseline.
"""

from typing import List, Mapping, Optional

import torch
from metatomic.torch import NeighborListOptions, System

from atomtrain.data.info import DatasetInfo
from atomtrain.nn.flat import flatten_systems
from atomtrain.nn.terms import EnergyTerm


def zbl_energy(z_i: torch.Tensor, z_j: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
    """The unswitched ZBL pair energy (eV) of atomic numbers ``z_i, z_j`` at
    distances ``r`` (Å); the atomic numbers are floating-point tensors."""
    # constants are literals (TorchScript reads no global floats): the
    # screening length 0.46850 Å (0.8854 Bohr radii), e² / (4 π ε0) in eV Å
    x = r * (torch.pow(z_i, 0.23) + torch.pow(z_j, 0.23)) / 0.46850
    screening = (
        0.1818 * torch.exp(-3.2 * x)
        + 0.5099 * torch.exp(-0.9423 * x)
        + 0.2802 * torch.exp(-0.4029 * x)
        + 0.02817 * torch.exp(-0.2016 * x)
    )
    return 14.3996454784936 * z_i * z_j / r * screening


def switch(r: torch.Tensor, outer: torch.Tensor) -> torch.Tensor:
    """1 below ``0.6 * outer``, 0 from ``outer`` on, and the quintic
    ``1 - 10 t³ + 15 t⁴ - 6 t⁵ = (1 - t)³ (1 + 3 t + 6 t²)`` in between
    (continuous with two derivatives; the factored form vanishes exactly at
    ``t = 1``, its derivative too)."""
    inner = 0.6 * outer
    t = ((r - inner) / (outer - inner)).clamp(0.0, 1.0)
    rest = 1.0 - t
    return rest * rest * rest * (1.0 + 3.0 * t + 6.0 * t * t)


def covalent_radii(atomic_types: List[int]) -> List[float]:
    """Covalent radii (Å) of ``atomic_types``, from ``ase.data``."""
    from ase.data import covalent_radii as table

    return [float(table[z]) for z in atomic_types]


class ZblRepulsion(EnergyTerm):
    """Switched ZBL repulsion of every pair closer than its ``r_outer``, as
    per-atom energies (half of each pair's energy on each of its atoms).

    ``model_lists`` are the neighbour lists the model already requests: the
    first one (half lists first) whose cutoff reaches the largest ``r_outer``
    of the model's elements is reused; otherwise the repulsion requests its own
    half list (:meth:`requested_neighbor_lists`). Atomic numbers and covalent
    radii are buffers (not in the state dict: they are fixed by the types), so
    an exported model carries them.
    """

    def __init__(
        self, dataset_info: DatasetInfo, model_lists: List[NeighborListOptions]
    ):
        types = list(dataset_info.atomic_types)
        radii = covalent_radii(types)
        cutoff = 2.0 * max(radii)
        usable = [o for o in model_lists if float(o.cutoff) >= cutoff]
        usable = sorted(usable, key=lambda o: (bool(o.full_list), float(o.cutoff)))
        own = NeighborListOptions(cutoff=cutoff, full_list=False, strict=False)
        super().__init__(dataset_info, usable[0] if usable else own, not usable)
        self.cutoff = cutoff
        # float64 until the model is cast (a float32 start would round the radii)
        self.register_buffer(
            "numbers", torch.tensor(types, dtype=torch.float64), persistent=False
        )
        self.register_buffer(
            "radii", torch.tensor(radii, dtype=torch.float64), persistent=False
        )

    def atomic_energies(
        self, systems: List[System], type_index: torch.Tensor
    ) -> torch.Tensor:
        """Per-atom repulsion energies ``(n_atoms, 1)``."""
        flat = flatten_systems(systems, self.options, expand_half=False)
        dtype = flat.vectors.dtype
        numbers = self.numbers.to(dtype)
        radii = self.radii.to(dtype)
        first = type_index[flat.centers]
        second = type_index[flat.neighbors]
        distances = torch.linalg.vector_norm(flat.vectors, dim=1)
        outer = radii[first] + radii[second]
        close = torch.nonzero(distances < outer).reshape(-1)
        first, second = first[close], second[close]
        r, outer = distances[close], outer[close]
        pair = zbl_energy(numbers[first], numbers[second], r) * switch(r, outer)
        half = 0.5 * pair
        energies = torch.zeros(type_index.shape[0], dtype=dtype, device=r.device)
        energies = energies.index_add(0, flat.centers[close], half)
        if not self.options.full_list:  # each pair once: the other half too
            energies = energies.index_add(0, flat.neighbors[close], half)
        return energies.unsqueeze(1)


def make_zbl(
    hypers: Mapping, dataset_info: DatasetInfo, model_lists: List[NeighborListOptions]
) -> Optional[ZblRepulsion]:
    """The repulsion of a model whose ``hypers`` say ``zbl: true`` (else None;
    hypers without the key, as in ace_mp checkpoints written before it, have
    none)."""
    return ZblRepulsion(dataset_info, model_lists) if hypers.get("zbl") else None


def upgrade_without_zbl(checkpoint: dict) -> dict:
    """Upgrade a model checkpoint from before the ``zbl`` hyper: its model has
    no repulsion (``upgrade_from_vN = staticmethod(upgrade_without_zbl)``)."""
    checkpoint["model_hypers"]["zbl"] = False
    return checkpoint
