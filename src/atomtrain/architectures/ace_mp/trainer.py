from atomtrain.training.loop import StandardTrainer


class Trainer(StandardTrainer):
    """ACE-MP trains with the shared loop unchanged."""

    __checkpoint_version__ = 1
