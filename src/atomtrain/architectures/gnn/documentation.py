"""
GNN
===

An equivariant message-passing transformer, built for speed on CPUs as well as
GPUs. Every atom carries scalar and vector features; each layer lets atoms
attend to their neighbours within the cutoff (multi-head attention whose
weights fade smoothly to zero at the cutoff) and then mixes scalars and
vectors through their invariants. Energies are sums of atomic contributions;
forces and stresses come from automatic differentiation.

Each atom's scalar features start from its element and a SOAP power spectrum
of its neighbourhood (the descriptor of SOAP-BPNN, within the same cutoff), so
the first layer already sees the full local geometry: the model reaches a
given accuracy in fewer epochs than from the element alone.

Rotational invariance is built in (no augmentation): scalar features are built
from distances and dot products only. Smooth cutoff functions make energies
and forces continuous when atoms cross the cutoff.

Ideas from PaiNN (scalar-vector message passing), the equivariant transformer
of TorchMD-Net (attention weighted by a distance filter) and PET (attention over
the neighbourhood), in a compact implementation of our own.
"""

from pydantic import Field
from typing_extensions import Annotated, TypedDict

from atomtrain.training.hypers import PositiveFloat, PositiveInt, TrainingHypers


class DescriptorHypers(TypedDict):
    """Shape of the SOAP descriptor that initialises the scalar features."""

    max_radial: PositiveInt = 6
    """Number of radial basis functions."""
    max_angular: Annotated[int, Field(ge=0)] = 4
    """Largest angular momentum of the spherical harmonics."""
    pseudo_species: Annotated[int, Field(ge=0)] = 2
    """Learnable channels neighbour elements are mixed into; 0: no descriptor."""


class ModelHypers(TypedDict):
    """Hypers of the GNN model."""

    cutoff: PositiveFloat = 4.0
    """Cutoff radius of the neighbour graph, in Å. Pairs dominate the cost, and
    their number grows as the cube of the cutoff: a short cutoff with more
    layers sees as far for less."""
    num_radial: PositiveInt = 8
    """Number of Bessel radial basis functions."""
    num_layers: PositiveInt = 2
    """Number of message-passing layers (the receptive field is
    ``num_layers * cutoff``). With the SOAP start two layers learn as well per
    unit of time as three on water, and run a third faster."""
    width: PositiveInt = 64
    """Number of scalar features per atom; a multiple of ``num_heads``."""
    num_vectors: PositiveInt = 16
    """Number of vector features per atom."""
    num_heads: Annotated[int, Field(ge=1)] = 4
    """Number of attention heads."""
    key_width: PositiveInt = 4
    """Width of the queries and keys of each attention head."""
    head_width: PositiveInt = 64
    """Hidden width of each target's read-out network."""
    descriptor: DescriptorHypers = {
        "max_radial": 6,
        "max_angular": 4,
        "pseudo_species": 2,
    }
    """SOAP power spectrum within the cutoff (switched off smoothly over its
    last quarter) that starts each atom's scalar features with its element
    embedding: the first layer then begins from a full description of the
    neighbourhood. On water it lowers the force error reached in a given time
    by about a third; it makes a step about half as long again (the default
    of 2 layers instead of 3 keeps an epoch as fast as before).
    ``pseudo_species: 0`` turns it off (checkpoints of version 1 have none)."""
    zbl: bool = False
    """Add a universal nuclear repulsion (ZBL screened Coulomb) to the energy of
    every pair closer than its covalent distance, fading out smoothly from 0.6
    of it. Turn it on for hot molecular dynamics, or when the training set
    samples short distances sparsely: energies stay repulsive there."""


class TrainerHypers(TrainingHypers):
    """Hypers of the shared training loop, with the GNN's defaults."""

    learning_rate: PositiveFloat = 3e-3
    """Peak learning rate of the AdamW optimizer (reached after warmup); the
    GNN learns faster with a higher one than SOAP-BPNN."""
