"""Hypers of the shared training loop; architectures' TrainerHypers extend them."""

from typing import Literal, Optional

from pydantic import Field
from typing_extensions import Annotated, TypedDict


# bounds are part of the types, so options validation refuses bad values with the
# key path before any work starts
PositiveInt = Annotated[int, Field(ge=1)]
NonNegativeInt = Annotated[int, Field(ge=0)]
PositiveFloat = Annotated[float, Field(gt=0)]
NonNegativeFloat = Annotated[float, Field(ge=0)]
Fraction = Annotated[float, Field(gt=0, le=1)]


class LoraHypers(TypedDict):
    """Size of the low-rank updates of ``finetune.method: lora``."""

    rank: PositiveInt = 4
    """Rank of the update ``B @ A`` added to every linear layer's weight."""
    alpha: PositiveFloat = 8.0
    """The update is scaled by ``alpha / rank``."""


class FinetuneHypers(TypedDict):
    """Start from a trained model instead of random weights."""

    read_from: Optional[str] = None
    """Checkpoint (.ckpt) of the same architecture to start from; new atomic
    types and targets of the training set are added to it."""
    method: Literal["full", "heads", "lora"] = "full"
    """``full`` trains every weight; ``heads`` trains only the output heads and
    leaves every other weight bit-identical; ``lora`` freezes every weight and
    trains low-rank updates of all linear layers, merged into the weights in
    every checkpoint (so the exported model has the architecture's usual size)."""
    lora: LoraHypers = {"rank": 4, "alpha": 8.0}
    """Rank and scale of the LoRA updates (``method: lora`` only)."""


class StageTwoHypers(TypedDict):
    """A last stage of training with a lower learning rate and other loss weights
    (MACE's stage two, or SWA)."""

    start: Optional[Annotated[float, Field(gt=0, lt=1)]] = None
    """Fraction of training progress at which stage two starts: the larger of the
    fraction of ``num_epochs`` done and, with ``max_time``, of the time budget
    used (``null`` turns stage two off). The best model is chosen among the
    stage-two epochs only, since their loss is not comparable with the earlier
    ones."""
    learning_rate_factor: Fraction = 0.1
    """During stage two the learning rate is the schedule's value capped at this
    times ``learning_rate`` (a cosine schedule keeps decaying below the cap)."""
    loss: dict = {}
    """Merged over the loss section (after ``loss_schedule``) during stage two,
    e.g. ``{energy: {weight: 10}}`` to weigh energies more at the end."""


class TrainingHypers(TypedDict):
    """Options of the shared training loop."""

    num_epochs: NonNegativeInt = 100
    """Number of passes over the training set."""
    max_time: NonNegativeFloat = 0.0
    """Wall-time budget of the training loop in seconds, summed over restarts (0:
    none). When it is spent, training ends the current epoch and stops as if
    ``num_epochs`` were reached; the learning-rate schedule follows the larger of
    the fraction of ``num_epochs`` done and the fraction of the budget used, so
    a cosine decay ends with the budget."""
    batch_size: PositiveInt = 8
    """Number of structures per batch, per process: N processes of torchrun or
    srun train on batches of ``N * batch_size`` structures per step."""
    max_atoms_per_batch: NonNegativeInt = 0
    """When positive, batches are filled with structures (in shuffled order) up to
    this many atoms instead of ``batch_size`` structures; a larger structure gets
    a batch of its own."""
    learning_rate: PositiveFloat = 1e-3
    """Peak learning rate of the AdamW optimizer (reached after warmup)."""
    weight_decay: NonNegativeFloat = 0.0
    """Decoupled weight decay of AdamW."""
    scheduler: Literal["cosine", "plateau", "constant"] = "cosine"
    """Learning-rate decay after warmup: cosine to ``min_lr_factor`` times the peak
    at the last epoch, halving on a validation plateau, or constant."""
    warmup_epochs: NonNegativeFloat = 1.0
    """Epochs of linear warmup from 1% of the learning rate to its peak."""
    min_lr_factor: Fraction = 0.01
    """Final learning rate of the cosine schedule, relative to the peak."""
    plateau_patience: NonNegativeInt = 10
    """Epochs without validation improvement before a plateau decay."""
    plateau_factor: Fraction = 0.5
    """Factor applied to the learning rate on a plateau."""
    grad_clip_norm: NonNegativeFloat = 10.0
    """Gradients are clipped to this global norm (0 disables clipping)."""
    log_interval: PositiveInt = 1
    """Write a log line and a CSV row every this many epochs."""
    checkpoint_interval: PositiveInt = 25
    """Write an intermediate checkpoint every this many epochs."""
    ema_decay: Annotated[float, Field(ge=0, lt=1)] = 0.0
    """Decay of an exponential moving average of the weights, used for validation,
    best-model selection and export (0 disables it; 0.99-0.999 are usual)."""
    early_stopping_patience: NonNegativeInt = 0
    """Stop when ``best_model_metric`` has not improved for this many epochs
    (0 disables early stopping)."""
    best_model_metric: str = "loss"
    """Validation quantity that selects the best model (lower is better): "loss"
    or a metric column such as "forces MAE (meV/Å)"."""
    max_nonfinite_steps: NonNegativeInt = 10
    """Steps whose loss or gradients are NaN/Inf are skipped with a warning;
    training stops with an error after this many of them."""
    loss_spike_factor: NonNegativeFloat = 1000.0
    """A step whose batch loss exceeds this many times the running mean of the
    recent ones is skipped with a warning naming its structures, so that a
    model which blows up on one batch keeps its weights and optimiser state
    (an applied spike moves every weight and inflates Adam's second moments).
    0 applies every step."""
    stop_signals: list[str] = ["SIGTERM", "SIGINT", "SIGUSR1"]
    """Signals that make training finish its step, write ``restart.ckpt`` and exit
    (SIGUSR1 is what SLURM sends with ``--signal=USR1@120`` before its time-out)."""
    finetune: FinetuneHypers = {
        "read_from": None,
        "method": "full",
        "lora": {"rank": 4, "alpha": 8.0},
    }
    """Fine-tuning from an existing checkpoint (the composition baseline is
    re-fitted on the new data)."""
    loss_schedule: dict[int, dict] = {}
    """Changes of the loss section from a given epoch on, e.g.
    ``{40: {energy: {weight: 10}}}`` raises the energy weight from epoch 40."""
    stage_two: StageTwoHypers = {
        "start": None,
        "learning_rate_factor": 0.1,
        "loss": {},
    }
    """A final stage with a capped learning rate and changed loss weights."""
    isolated_atoms: dict[str, str] = {}
    """Energies of isolated atoms as the composition baseline of an energy
    target, e.g. ``{energy: isolated_atoms.xyz}``: a file with one single-atom
    structure per element, read with the key and unit of the target in the
    training set (paths are relative to the directory atomtrain runs in). The
    per-element energies replace the least-squares fit; the scale is still
    fitted on the residuals."""
    loss: dict = {}
    """Filled from the top-level ``loss`` section of the options."""
