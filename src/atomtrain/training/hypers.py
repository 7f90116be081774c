"""Hypers of the shared training loop; architectures' TrainerHypers extend them."""

from typing import Literal

from typing_extensions import TypedDict


class TrainingHypers(TypedDict):
    """Options of the shared training loop."""

    num_epochs: int = 100
    """Number of passes over the training set."""
    batch_size: int = 8
    """Number of structures per batch."""
    learning_rate: float = 1e-3
    """Peak learning rate of the AdamW optimizer (reached after warmup)."""
    weight_decay: float = 0.0
    """Decoupled weight decay of AdamW."""
    scheduler: Literal["cosine", "plateau", "constant"] = "cosine"
    """Learning-rate decay after warmup: cosine to ``min_lr_factor`` times the peak
    at the last epoch, halving on a validation plateau, or constant."""
    warmup_epochs: float = 1.0
    """Epochs of linear warmup from 1% of the learning rate to its peak."""
    min_lr_factor: float = 0.01
    """Final learning rate of the cosine schedule, relative to the peak."""
    plateau_patience: int = 10
    """Epochs without validation improvement before a plateau decay."""
    plateau_factor: float = 0.5
    """Factor applied to the learning rate on a plateau."""
    grad_clip_norm: float = 10.0
    """Gradients are clipped to this global norm (0 disables clipping)."""
    log_interval: int = 1
    """Write a log line and a CSV row every this many epochs."""
    checkpoint_interval: int = 25
    """Write an intermediate checkpoint every this many epochs."""
    loss: dict = {}
    """Filled from the top-level ``loss`` section of the options."""
