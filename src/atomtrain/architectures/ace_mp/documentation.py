"""
ACE-MP
======

The accuracy flagship: many-body equivariant message passing in the spirit of
MACE (atomic cluster expansion on a graph). In each layer an atom builds the
density of its neighbours in a basis of learnable radial functions times real
spherical harmonics up to ``l_max``, takes products of that density with itself
up to ``correlation`` (body order ``correlation + 1`` per layer), and passes
the result, as scalar and higher-``l`` features, to the next layer. Energies
are sums of atomic read-outs of every layer's scalars; forces and stresses come
from automatic differentiation.

Products couple harmonics with Gaunt coefficients (only ``l1 + l2 + l``
even), so every feature keeps its natural parity: scalars are invariant under
rotations and reflections by construction. Radial functions vanish smoothly
with two derivatives at the cutoff.

Three presets trade speed for accuracy (``preset: small | medium | large``;
keys set beside the preset override it): ``small`` (16 channels, harmonics to
``l = 2``), ``medium`` (the default: 32 channels, ``l = 3``) and ``large`` (64
channels, ``l = 3``). The benchmarks page gives what each costs (training
structures/s and inference ms/atom on water) and reaches (rMD17 ethanol,
acetylacetone). For benchmark accuracy train in float64 (``base_precision:
64``) with ``features_in_float32: true`` (float32 message passing, float64
energies: 1.5 times faster), ``hidden_l_max: 2``, a large force weight and a
final stage with more weight on energies (``bench/accuracy/`` holds the
options used there, and the benchmarks page what each was measured to change).

Ideas from MACE (Batatia et al., NeurIPS 2022), ACE (Drautz 2019) and the
Gaunt tensor product (Luo et al., ICLR 2024), in an implementation of our own.
"""

from typing import Literal

from pydantic import Field
from typing_extensions import Annotated, TypedDict

from atomtrain.nn.long_range_hypers import LongRangeHypers, long_range_defaults
from atomtrain.training.hypers import PositiveFloat, PositiveInt, TrainingHypers


PRESETS = {
    "small": {"channels": 16, "l_max": 2, "radial_hidden": 32},
    "medium": {"channels": 32, "l_max": 3, "radial_hidden": 64},
    "large": {"channels": 64, "l_max": 3, "radial_hidden": 64},
}


class ModelHypers(TypedDict):
    """Hypers of the ACE-MP model."""

    preset: Literal["small", "medium", "large"] = "medium"
    """Named sizes (see the description above): the preset's channels,
    ``l_max`` and ``radial_hidden`` replace the defaults below, and any of
    these keys given beside the preset replaces the preset's value."""

    cutoff: PositiveFloat = 5.0
    """Cutoff radius of the neighbour graph, in Å."""
    num_radial: PositiveInt = 8
    """Number of Bessel functions the radial networks start from."""
    radial_hidden: PositiveInt = 64
    """Width of the two hidden layers of each radial network."""
    channels: PositiveInt = 32
    """Number of channels of every feature (each with all its ``l``)."""
    l_max: Annotated[int, Field(ge=0, le=4)] = 3
    """Largest ``l`` of the spherical harmonics and of the neighbour density."""
    hidden_l_max: Annotated[int, Field(ge=0, le=3)] = 1
    """Largest ``l`` of the features passed from one layer to the next."""
    correlation: Annotated[int, Field(ge=1, le=4)] = 3
    """Largest power of the neighbour density in the products (body order of a
    layer minus one)."""
    num_layers: PositiveInt = 2
    """Number of message-passing layers (receptive field ``num_layers * cutoff``)."""
    features_in_float32: bool = False
    """Compute the message-passing features in float32 in a float64 run
    (``base_precision: 64``): the parameters, the optimiser, the read-outs,
    the composition baseline and the energy sums stay float64, so energies of
    large molecules keep float64 resolution, while the costly part runs about
    1.5 times faster. No effect in a float32 run."""
    readout_hidden: PositiveInt = 16
    """Hidden width of the last layer's read-out network."""
    zbl: bool = False
    """Short-range repulsion: the ZBL pair energy, switched on below the sum of
    covalent radii (fully from 0.6 of it), added after the composition baseline.
    Keeps atoms apart in molecular dynamics at high temperature and where the
    data has no structures that close."""
    long_range: LongRangeHypers = long_range_defaults()
    """Long-range electrostatics: a latent charge per atom, read out of the
    last layer's scalar features, and the Coulomb energy of these charges
    (Ewald, P3M or direct sum by torch-pme) added to the energy, for ionic and
    polar systems whose energies depend on charges beyond the cutoff. Needs
    ``pip install 'atomtrain[long-range]'``."""


class TrainerHypers(TrainingHypers):
    """Hypers of the shared training loop, with ACE-MP's defaults."""

    learning_rate: PositiveFloat = 5e-3
    """Peak learning rate of the AdamW optimizer (reached after warmup)."""
    batch_size: PositiveInt = 5
    """Number of structures per batch, per process."""
    ema_decay: Annotated[float, Field(ge=0, lt=1)] = 0.99
    """Decay of the exponential moving average of the weights used for
    validation and export."""
