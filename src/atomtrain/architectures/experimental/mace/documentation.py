"""
MACE
====

MACE (higher-order equivariant message passing, Batatia et al., NeurIPS 2022)
from the ``mace-torch`` package, trained with atomtrain's data pipeline, losses,
logging, checkpoints and metatomic export.

Each atom's neighbourhood is expanded on radial Bessel functions and spherical
harmonics; ``num_interactions`` equivariant message-passing layers build
many-body features (body order ``correlation + 1`` per layer) with the hidden
irreducible representations ``hidden_irreps``, and a read-out after every layer
adds up to the atomic energy. The blocks are MACE's own (``mace.modules``); the
neighbour vectors come from atomtrain, so forces and stresses are derivatives of
the energy through them, and the per-element reference energies and the energy
scale are atomtrain's composition baseline (the role of MACE's ``E0s`` and
``--scaling rms_forces_scaling``).

Fits energy targets (with forces and stress or virial); per-atom energies are
available. Continuing training on data with new elements or new targets is not
supported: train a new model instead.
"""

from typing import List, Literal, Optional

from pydantic import Field
from typing_extensions import Annotated, TypedDict

from atomtrain.training.hypers import PositiveFloat, PositiveInt, TrainingHypers


Interaction = Literal[
    "RealAgnosticResidualInteractionBlock",
    "RealAgnosticInteractionBlock",
    "RealAgnosticDensityInteractionBlock",
    "RealAgnosticDensityResidualInteractionBlock",
]


class ModelHypers(TypedDict):
    """Hypers of the MACE model (names follow ``mace_run_train``)."""

    r_max: PositiveFloat = 5.0
    """Cutoff radius of the neighbour list, in Å."""
    num_radial_basis: PositiveInt = 8
    """Number of radial basis functions (``num_bessel`` of MACE)."""
    num_cutoff_basis: PositiveInt = 5
    """Power of the polynomial envelope that takes the radial functions smoothly to
    zero at ``r_max``."""
    radial_type: Literal["bessel", "gaussian", "chebyshev"] = "bessel"
    """Family of the radial basis functions."""
    distance_transform: Literal["None", "Agnesi", "Soft"] = "None"
    """Transformation of the distances before the radial basis."""
    radial_MLP: List[PositiveInt] = [64, 64, 64]
    """Hidden layer widths of the network that maps radial features to the weights
    of the tensor products."""
    max_ell: Annotated[int, Field(ge=0)] = 3
    """Largest angular momentum of the spherical harmonics of the edges."""
    hidden_irreps: str = "128x0e + 128x1o"
    """Irreducible representations of the node features between layers, in e3nn
    notation; every irrep has the same multiplicity (the number of channels), e.g.
    ``64x0e`` (invariant only, fastest), ``128x0e + 128x1o`` (MACE's default).
    """
    correlation: PositiveInt = 3
    """Correlation order of the product basis of each layer (body order minus one).
    """
    num_interactions: PositiveInt = 2
    """Number of message-passing layers."""
    MLP_irreps: str = "16x0e"
    """Hidden irreps of the non-linear read-out of the last layer."""
    gate: Literal["silu", "tanh", "abs", "None"] = "silu"
    """Non-linearity of the read-out network."""
    interaction: Interaction = "RealAgnosticResidualInteractionBlock"
    """Interaction block of the layers after the first."""
    interaction_first: Interaction = "RealAgnosticInteractionBlock"
    """Interaction block of the first layer."""
    avg_num_neighbors: Optional[PositiveFloat] = None
    """Average number of neighbours within ``r_max``, which normalises the sum over
    neighbours; ``null`` computes it from the training set when training starts
    (1 until then), as ``mace_run_train`` does."""
    use_reduced_cg: bool = False
    """Use the reduced Clebsch-Gordan coefficients in the product basis."""
    zbl: bool = False
    """Atomtrain's ZBL repulsion added to MACE's energy for pairs nearer than
    their summed covalent radii (smooth switch from 0.6 of that distance), the
    role of ``mace_run_train --pair_repulsion``. Useful for molecular dynamics
    at high temperature, or data that never samples atoms that close."""


class TrainerHypers(TrainingHypers):
    """Hypers of the shared training loop, with atomtrain's defaults."""
