"""The shared loop, after computing MACE's average number of neighbours."""

from typing import Sequence

from atomtrain.data.structure import Structure
from atomtrain.data.systems import compute_neighbors, neighbors_of
from atomtrain.training.logs import logger
from atomtrain.training.loop import StandardTrainer


def average_neighbors(model, structures: Sequence[Structure]) -> float:
    """Mean number of neighbours within the model's cutoff per atom (what
    ``mace_run_train --compute_avg_num_neighbors`` computes)."""
    options = model.neighbor_options  # not the ZBL repulsion's own list
    # in-memory structures keep their lists (the loop reuses them); lazy ones
    # (a packed store) are streamed, one structure at a time
    compute_neighbors(structures, [options])
    pairs = atoms = 0
    for structure in structures:
        pairs += int(neighbors_of(structure, options).shape[0])
        atoms += len(structure)
    return pairs / max(atoms, 1)


class Trainer(StandardTrainer):
    """The shared loop; a model without ``avg_num_neighbors`` gets it from the
    training set first (a restarted or fine-tuned model keeps its own). Every
    process of a distributed run sees the same data, so computes the same value.
    """

    __checkpoint_version__ = 1

    def before_training(self, model, train: Sequence[Structure]) -> None:
        if model.hypers.get("avg_num_neighbors") is None:
            value = average_neighbors(model, train)
            model.set_avg_num_neighbors(value)
            logger.info(f"MACE: average number of neighbours {value:.3f}")
