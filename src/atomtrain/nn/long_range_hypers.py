"""The ``long_range`` hypers of the architectures that offer electrostatics.

Defined once here, without torch, so that each architecture's
``documentation.py`` stays importable without the model code (and the
defaults of the documented hypers and of :mod:`atomtrain.nn.long_range` are
the same numbers).
"""

from pydantic import Field
from typing_extensions import Annotated, TypedDict


class LongRangeHypers(TypedDict):
    """Long-range electrostatics from learnt latent charges (torch-pme)."""

    enable: bool = False
    """Add the Coulomb energy of learnt per-atom charges to energy targets
    (needs ``pip install 'atomtrain[long-range]'``)."""
    smearing: Annotated[float, Field(gt=0)] = 1.4
    """Width (Å) of the Gaussians splitting 1/r into a real-space and a
    reciprocal-space part in periodic cells. The real-space part is accurate to
    about ``erfc(cutoff / (√2 smearing))``; keep ``cutoff >= 5 smearing``. A
    wider smearing needs a longer neighbour list and fewer reciprocal vectors."""
    cutoff: Annotated[float, Field(gt=0)] = 7.0
    """Radius (Å) of the neighbour list of the real-space part."""
    lr_wavelength: Annotated[float, Field(gt=0)] = 0.7
    """Shortest wavelength (Å) of the reciprocal-space vectors of the Ewald
    sum. Half the smearing gives Coulomb energies within 3e-7 of a converged
    Ewald sum (0.7 times the smearing: 7e-7; equal to it: 5e-4)."""
    mesh_spacing: Annotated[float, Field(gt=0)] = 1.0
    """Largest spacing (Å) of the P3M mesh (its size is rounded up to a power
    of two). With the defaults, energies are within 7e-5 of the Ewald sum; 0.7
    Å gives 2e-5 and, for 1,536 atoms of water, costs four times as much."""
    ewald_max_atoms: Annotated[int, Field(ge=1)] = 64
    """Periodic structures with more atoms than this use P3M instead of Ewald.
    At a fixed density and resolution Ewald costs N², P3M N log N; on one CPU
    core at the density of water they cost the same near 64 atoms (forces of
    192 atoms with the defaults: 66 ms by Ewald, 10 ms by P3M)."""


def long_range_defaults() -> dict:
    """A fresh dict of the defaults above (the default of a model's
    ``long_range`` hyper, and what fills the keys a plain dict leaves out)."""
    return {
        name: vars(LongRangeHypers)[name] for name in LongRangeHypers.__annotations__
    }
