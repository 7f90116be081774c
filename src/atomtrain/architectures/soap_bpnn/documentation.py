"""
SOAP-BPNN
=========

A Behler-Parrinello neural network on SOAP power-spectrum descriptors: the
neighbour density of each atom is expanded on radial functions and real
spherical harmonics (plain torch, no compiled extension), contracted into
rotation-invariant features, and fed to one small neural network per element.
The energy is the sum of atomic energies; forces and stresses come from
automatic differentiation.
Neighbour elements are mixed into a fixed number of learnable *pseudo species*,
so the descriptor size does not grow with the number of elements.

A fast, robust baseline for energies, forces, stresses and any per-structure or
per-atom scalar target.
"""

from pydantic import Field
from typing_extensions import Annotated, TypedDict

from atomtrain.nn.long_range_hypers import LongRangeHypers, long_range_defaults
from atomtrain.training.hypers import (
    NonNegativeFloat,
    PositiveFloat,
    PositiveInt,
    TrainingHypers,
)


class SoapHypers(TypedDict):
    """Shape of the SOAP descriptor."""

    cutoff: PositiveFloat = 5.0
    """Cutoff radius of the neighbour density, in Å."""
    cutoff_width: NonNegativeFloat = 0.5
    """Width of the smooth region before the cutoff, in Å."""
    max_radial: PositiveInt = 6
    """Number of radial basis functions."""
    max_angular: Annotated[int, Field(ge=0)] = 4
    """Largest angular momentum of the spherical harmonics."""
    pseudo_species: PositiveInt = 4
    """Number of learnable channels neighbour elements are mixed into."""


class BpnnHypers(TypedDict):
    """Shape of the per-element neural networks."""

    num_hidden_layers: PositiveInt = 2
    """Number of hidden layers of each element's network."""
    num_neurons_per_layer: PositiveInt = 128
    """Width of the hidden layers."""
    layernorm: bool = True
    """Normalise the descriptor of each atom before the network."""


class ModelHypers(TypedDict):
    """Hypers of the SOAP-BPNN model."""

    soap: SoapHypers = {
        "cutoff": 5.0,
        "cutoff_width": 0.5,
        "max_radial": 6,
        "max_angular": 4,
        "pseudo_species": 4,
    }
    """The descriptor."""
    bpnn: BpnnHypers = {
        "num_hidden_layers": 2,
        "num_neurons_per_layer": 128,
        "layernorm": True,
    }
    """The per-element networks."""
    zbl: bool = False
    """Add the fixed ZBL nuclear repulsion to the energy of atoms closer than
    the sum of their covalent radii (switched off smoothly from 0.6 of it), so
    the networks only learn the rest. For molecular dynamics at high
    temperature, or data with few structures where atoms come that close."""
    long_range: LongRangeHypers = long_range_defaults()
    """Long-range electrostatics: a latent charge per atom, read out of the
    last hidden layer of the element networks, and the Coulomb energy of these
    charges (Ewald, P3M or direct sum by torch-pme) added to the energy, for
    ionic and polar systems whose energies depend on charges beyond the
    cutoff. Needs ``pip install 'atomtrain[long-range]'``."""


class TrainerHypers(TrainingHypers):
    """Hypers of the shared training loop, with SOAP-BPNN's defaults."""
