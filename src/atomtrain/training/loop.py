"""The one training loop every architecture uses (configured, never copied).

Its state is complete at every step boundary (model, optimiser, schedule, data
order, partial epoch sums), so a run stopped by a signal or killed at any
instant resumes from its last checkpoint to the same final weights.
"""

from __future__ import annotations

import contextlib
import copy
import math
import os
import time
from dataclasses import dataclass
from typing import Any, Dict, List, Sequence

import torch

from atomtrain import __version__
from atomtrain.abc import Context, ModelInterface, TrainerInterface
from atomtrain.architecture_names import architecture_name
from atomtrain.data import loading
from atomtrain.data.sequences import concatenate, sizes_of
from atomtrain.data.structure import Structure
from atomtrain.data.systems import compute_neighbors
from atomtrain.errors import UserError
from atomtrain.nn.baseline import TargetBaseline
from atomtrain.training import distributed, lora
from atomtrain.training.baseline_fit import fit_baselines
from atomtrain.training.batches import EpochProgress, batches_of
from atomtrain.training.budget import Clock
from atomtrain.training.checkpoints import atomic_save
from atomtrain.training.distributed import StepResult, World
from atomtrain.training.ema import WeightAverage
from atomtrain.training.evaluate import predict, references
from atomtrain.training.hypers import TrainingHypers
from atomtrain.training.logs import CsvLog, epoch_line, logger
from atomtrain.training.loss_schedule import loss_in_force
from atomtrain.training.losses import normalised_errors, total_loss
from atomtrain.training.metrics import Metrics
from atomtrain.training.observers import Observers
from atomtrain.training.schedule import LearningRate
from atomtrain.training.signals import StopRequests
from atomtrain.training.spikes import SpikeGuard


RESTART_CHECKPOINT = "restart.ckpt"


class TrainingStopped(Exception):
    """Raised after a stop signal, once a resumable checkpoint is written."""

    def __init__(self, signal_name: str, path: str, epoch: int, step: int):
        super().__init__(
            f"training stopped by {signal_name} during epoch {epoch + 1} after "
            f"step {step}; the state is saved in {path}. Resume with the same "
            f"command plus '--restart {path}' (or '--restart auto')."
        )
        self.path = path


@dataclass
class Batchwise:
    """Everything a step needs that does not change during training."""

    model: ModelInterface
    requests: list
    dtype: torch.dtype
    device: torch.device
    scales: Dict[str, torch.Tensor]
    loss_options: dict
    world: World

    def loss(self, batch: List[Structure], training: bool):
        model = self.model
        targets = model.dataset_info.targets

        def call(systems, outputs):
            return model(systems, outputs, None)

        dtype, device = self.dtype, self.device
        predictions = predict(
            call, batch, self.requests, targets, dtype, device, training=training
        )
        reference = references(batch, targets, dtype, device)
        n_atoms = torch.tensor([len(s) for s in batch], dtype=dtype, device=device)
        volumes = torch.stack([torch.det(s.cell).abs() for s in batch]).to(
            device=device, dtype=dtype
        )
        errors = normalised_errors(
            predictions, reference, targets, n_atoms, volumes / n_atoms
        )
        loss = total_loss(errors, self.loss_options, self.scales)
        return loss, errors

    def evaluate(self, batch: List[Structure], training: bool) -> StepResult:
        """The loss of this process's part of a step, combined with the other
        processes' parts (a process may have an empty part at an epoch's end)."""
        loss, errors = self.loss(batch, training) if batch else (None, {})
        return distributed.combine(
            self.world,
            self.model.dataset_info.targets,
            loss,
            errors,
            self.loss_options,
            self.scales,
            len(batch),
        )


def _add_sums(into: Dict[tuple, list], sums: Dict[tuple, list]) -> None:
    for key, values in sums.items():
        entry = into.setdefault(key, [0.0, 0.0, 0])
        for i, value in enumerate(values):
            entry[i] += value


class StandardTrainer(TrainerInterface[TrainingHypers]):
    """AdamW, warmup + cosine/plateau schedule over epochs or a time budget,
    an optional stage two, gradient clipping, per-target weighted losses,
    metrics in physical units, best-model selection on the validation loss,
    checkpoints every ``checkpoint_interval`` epochs and a resumable
    ``restart.ckpt`` after every epoch and on stop signals."""

    __checkpoint_version__ = 1

    def __init__(self, hypers: TrainingHypers):
        super().__init__(hypers)
        self.epoch = 0  # epochs completed
        self.progress = EpochProgress()
        self.state: Dict[str, Any] | None = None  # restored on restart
        self.best_loss = math.inf
        self.best_state: Dict[str, torch.Tensor] | None = None
        self.optimizer: torch.optim.Optimizer | None = None
        self.schedule: LearningRate | None = None
        self.shuffle_seed: int | None = None
        self.nonfinite_steps = 0
        self.spikes = SpikeGuard(hypers.get("loss_spike_factor", 0.0))
        self.ema: WeightAverage | None = None
        self.ema_state: Dict[str, torch.Tensor] | None = None  # restored on restart
        self.epochs_without_improvement = 0
        self.observers = Observers()  # progress bars, loggers, plots
        self.lora_state: Dict[str, torch.Tensor] | None = None  # restored on restart
        self.elapsed_before = 0.0  # seconds of training before this run
        self.clock: Clock | None = None
        self.stage_two = False  # whether stage two has started
        # per-element values that replace a target's composition fit, set by
        # the caller from ``isolated_atoms``: {target: {atomic number: values}}
        self.fixed_compositions: Dict[str, Dict[int, torch.Tensor]] = {}

    # ------------------------------------------------------------------ train
    def train(
        self,
        model: ModelInterface,
        dtype: torch.dtype,
        devices: List[torch.device],
        train_datasets: List[Sequence[Structure]],
        val_datasets: List[Sequence[Structure]],
        checkpoint_dir: str,
    ) -> None:
        """Train on ``train_datasets`` (lists, or lazy sequences of a packed
        store, never materialised). Under torch.distributed every process runs
        this with the same data; ``batch_size`` is per process."""
        hypers = self.hypers
        world = distributed.current()
        self.clock = Clock(hypers.get("max_time", 0.0), self.elapsed_before)
        if not world.is_main:
            self.observers = Observers()  # progress is shown by rank 0 only
        train = concatenate(train_datasets)
        val = concatenate(val_datasets)
        self.before_training(model, train)
        steps = self._prepare(model, dtype, devices[0], train, val, world)
        sizes = sizes_of(train)
        csv_log = CsvLog(os.path.join(checkpoint_dir, "train.csv"), self.epoch)
        started = time.perf_counter()
        restart_path = os.path.join(checkpoint_dir, RESTART_CHECKPOINT)
        stop_signals = list(hypers.get("stop_signals", []))
        with StopRequests(stop_signals) as stop, contextlib.closing(self.observers):
            for epoch in range(self.epoch, hypers["num_epochs"]):
                elapsed = self.clock.agreed(world)
                if self.clock.spent(elapsed):
                    self._log_time_stop(elapsed)  # a restart of a spent budget
                    break
                model.train()
                loss_options = loss_in_force(hypers, epoch, self.stage_two)
                if loss_options != steps.loss_options:
                    self.spikes.reset()  # other weights, other loss level
                steps.loss_options = loss_options
                batches = world.shard(
                    batches_of(
                        sizes,
                        hypers["batch_size"],
                        self.shuffle_seed + epoch,
                        hypers.get("max_atoms_per_batch", 0),
                    )
                )
                self.observers.epoch_started(
                    epoch + 1, len(batches), self.progress.step
                )
                remaining = batches[self.progress.step :]
                out_of_time = False
                with contextlib.closing(
                    loading.batches(train, remaining, steps.requests)
                ) as structures:
                    for batch in structures:
                        self._enter_stage_two(steps, epoch)
                        self._step(steps, batch)
                        out_of_time = self.clock.spent(self.schedule.elapsed)
                        if out_of_time:
                            break  # the epoch ends here, as the last one
                        if world.any(stop.received is not None):
                            self._stopped(model, restart_path, stop, epoch, world)
                self._end_epoch(steps, val, csv_log, started, last=out_of_time)
                self.save_checkpoint(model, restart_path)
                if self.epoch % hypers["checkpoint_interval"] == 0:
                    self.save_checkpoint(
                        model, os.path.join(checkpoint_dir, f"model_{self.epoch}.ckpt")
                    )
                if world.any(stop.received is not None):
                    self._stopped(model, restart_path, stop, self.epoch, world)
                if out_of_time:
                    self._log_time_stop(self.schedule.elapsed)
                    break
                if self.should_stop_early():
                    logger.info(
                        f"early stopping after epoch {self.epoch}: "
                        f"{hypers['best_model_metric']} has not improved for "
                        f"{self.epochs_without_improvement} epochs"
                    )
                    break

    def _log_time_stop(self, elapsed: float) -> None:
        logger.info(
            f"training stopped at the time budget: {elapsed:.1f} s "
            f"used of max_time = {self.clock.max_time:g} s, after {self.epoch} "
            f"epochs (the last one possibly partial)"
        )

    def _enter_stage_two(self, steps: Batchwise, epoch: int) -> None:
        """Switch to the stage-two loss once progress reaches its start, and
        choose the best model among stage-two epochs only (their loss differs)."""
        if self.stage_two or not self.schedule.in_stage_two():
            return
        self.stage_two = True
        steps.loss_options = loss_in_force(self.hypers, epoch, True)
        self.spikes.reset()
        self.best_loss = math.inf
        self.epochs_without_improvement = 0
        logger.info(
            f"stage two from step {self.schedule.step_count} (progress "
            f"{self.schedule.progress():.3f}): learning rate at most "
            f"{self.schedule.peak * self.schedule.stage_two_factor:.3e}"
        )

    def _stopped(self, model, path: str, stop: StopRequests, epoch: int, world):
        """Every process stops at the same step; rank 0 writes the checkpoint."""
        self.save_checkpoint(model, path)
        world.barrier()  # the file exists before any process exits
        signal_name = stop.received or "a signal to another process"
        raise TrainingStopped(signal_name, path, epoch, self.progress.step)

    def _prepare(self, model, dtype, device, train, val, world: World) -> Batchwise:
        requests = model.requested_neighbor_lists()
        started = time.perf_counter()
        # in-memory structures keep their lists; packed ones compute on access
        cached = compute_neighbors(train, requests) + compute_neighbors(val, requests)
        if cached:
            logger.info(
                f"neighbour lists of {cached} structures computed in "
                f"{time.perf_counter() - started:.1f} s"
            )
        model.to(device=device, dtype=dtype)
        # fitted after the cast: float64 runs keep float64 baselines (isolated-
        # atom energies exactly), not values rounded to float32
        if self.state is None and world.is_main:
            fit_baselines(model, train, model.dataset_info, self.fixed_compositions)
        self._freeze_for_finetuning(model)
        world.broadcast_module(model)  # rank 0's baselines and initial weights
        scales = {
            m.target_name: m.scale.detach().clone()
            for m in model.modules()
            if isinstance(m, TargetBaseline)
        }
        for name in model.dataset_info.targets:
            scales.setdefault(name, torch.ones(1, dtype=dtype, device=device))
        hypers = self.hypers
        self.optimizer = torch.optim.AdamW(
            model.parameters(),
            lr=hypers["learning_rate"],
            weight_decay=hypers["weight_decay"],
        )
        if self.shuffle_seed is None:
            seed = int(torch.randint(0, 2**31 - 1, (1,)).item())
            self.shuffle_seed = world.broadcast_object(seed)
        self.schedule = LearningRate(hypers, self._steps_per_epoch(train, world))
        if self.state is not None:
            self.optimizer.load_state_dict(self.state["optimizer_state_dict"])
            self.schedule.load_state_dict(self.state["schedule_state"])
            self.state = None
        if hypers.get("ema_decay", 0.0) > 0:
            self.ema = WeightAverage(model, hypers["ema_decay"])
            if self.ema_state is not None:
                self.ema.average = {
                    k: v.to(device=device, dtype=self.ema.average[k].dtype)
                    for k, v in self.ema_state.items()
                }
        if self.schedule.stage_two_start is not None:
            loss_in_force(hypers, 0, True)  # names no unknown target: fail now
        # the loss in force where training resumes: a restart keeps the spike
        # guard's running mean unless the loss changes there
        loss = loss_in_force(hypers, self.epoch, self.stage_two)
        return Batchwise(model, requests, dtype, device, scales, loss, world)

    def _freeze_for_finetuning(self, model: ModelInterface) -> None:
        finetune = self.hypers.get("finetune", {})
        if finetune.get("method") == "heads":
            for name, parameter in model.named_parameters():
                parameter.requires_grad_(model.is_head_parameter(name))
        elif finetune.get("method") == "lora":
            settings = finetune["lora"]
            wrapped = lora.attach(model, settings["rank"], settings["alpha"])
            if wrapped == 0:
                raise UserError(
                    "architecture.training.finetune.method is 'lora', but this "
                    f"model ({type(model).__name__}) has no torch.nn.Linear layer "
                    "to adapt. Use method 'full' or 'heads' for it."
                )
            if self.lora_state is not None:  # the unmerged weights of a restart
                model.load_state_dict(self.lora_state)
                self.lora_state = None
            trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
            logger.info(
                f"LoRA: {wrapped} linear layers adapted with rank "
                f"{settings['rank']}; {trainable:,} trainable parameters"
            )

    def _steps_per_epoch(self, train: Sequence[Structure], world: World) -> int:
        max_atoms = self.hypers.get("max_atoms_per_batch", 0)
        if max_atoms > 0:  # the first epoch's count: later ones differ by little
            sizes = sizes_of(train)
            n_batches = len(batches_of(sizes, 1, self.shuffle_seed, max_atoms))
        else:
            n_batches = math.ceil(len(train) / self.hypers["batch_size"])
        return math.ceil(n_batches / world.size)

    def _step(self, steps: Batchwise, batch: List[Structure]) -> None:
        """One optimiser step; non-finite losses or gradients and loss spikes
        skip it."""
        model, hypers = steps.model, self.hypers
        self.schedule.apply(self.optimizer)
        self.optimizer.zero_grad(set_to_none=True)
        result = steps.evaluate(batch, training=True)
        finite = math.isfinite(result.value)
        spike = finite and self.spikes.is_spike(result.value)
        if finite and not spike:
            if result.loss is not None:
                # only the weights: the leaves of positions and strains also
                # require gradients, and their second derivatives (half of the
                # work of a force loss's backward pass) are never used
                trainable = [p for p in model.parameters() if p.requires_grad]
                result.loss.backward(inputs=trainable)
            steps.world.sum_gradients(model.parameters())
            norm = torch.nn.utils.clip_grad_norm_(
                model.parameters(),
                hypers["grad_clip_norm"] if hypers["grad_clip_norm"] > 0 else math.inf,
            )
            finite = bool(torch.isfinite(norm))
        if spike:
            self._skip_spike(batch, result.value)
        elif finite:
            self.optimizer.step()
            if self.ema is not None:
                self.ema.update(model)
            _add_sums(self.progress.metric_sums, result.metric_sums)
            self.progress.loss_sum += result.value * result.count
            self.progress.count += result.count
        else:
            self._skip_nonfinite(batch)
        self.schedule.step(self.clock.agreed(steps.world))
        self.progress.step += 1
        self.observers.step_done(result.value)

    def _skip_spike(self, batch: List[Structure], value: float) -> None:
        sources = ", ".join(s.source or "?" for s in batch)
        logger.warning(
            f"warning: skipped a step whose loss {value:.4g} is "
            f"{value / self.spikes.mean:.3g} times the recent mean "
            f"{self.spikes.mean:.4g} (a loss spike: more than "
            f"architecture.training.loss_spike_factor = {self.spikes.factor:g} "
            f"times; {self.spikes.skipped} skipped so far); structures: {sources}"
        )

    def _skip_nonfinite(self, batch: List[Structure]) -> None:
        self.optimizer.zero_grad(set_to_none=True)
        self.nonfinite_steps += 1
        sources = ", ".join(s.source or "?" for s in batch)
        limit = self.hypers.get("max_nonfinite_steps", 10)
        if self.nonfinite_steps > limit:
            raise UserError(
                f"the loss or its gradients were NaN or infinite in "
                f"{self.nonfinite_steps} steps (limit "
                f"architecture.training.max_nonfinite_steps = {limit}); the last "
                f"batch held the structures {sources}. Check these structures "
                "for outliers or lower the learning rate."
            )
        logger.warning(
            f"warning: skipped a step with a NaN/Inf loss or gradient "
            f"({self.nonfinite_steps}/{limit}); structures: {sources}"
        )

    def _end_epoch(
        self, steps: Batchwise, val, csv_log: CsvLog, started, last: bool = False
    ) -> None:
        model, hypers = steps.model, self.hypers
        targets = model.dataset_info.targets
        self.epoch += 1
        train_metrics = Metrics(targets)
        train_metrics.sums = self.progress.metric_sums
        train_loss = self.progress.loss_sum / max(1, self.progress.count)
        self.progress = EpochProgress()

        model.eval()
        with self.ema.swapped_in(model) if self.ema else contextlib.nullcontext():
            val_metrics = Metrics(targets)
            val_loss_sum = 0.0
            max_atoms = hypers.get("max_atoms_per_batch", 0)
            val_batches = steps.world.shard(
                batches_of(sizes_of(val), hypers["batch_size"], None, max_atoms)
            )
            self.observers.validation_started(len(val_batches))
            for batch in loading.batches(val, val_batches, steps.requests):
                result = steps.evaluate(batch, training=False)
                _add_sums(val_metrics.sums, result.metric_sums)
                self.observers.validation_step_done()
                val_loss_sum += result.value * result.count
            val_loss = val_loss_sum / max(1, len(val))
            self.schedule.end_epoch(val_loss)
            if val:
                self._select_best(model, {"loss": val_loss, **val_metrics.report()})

        if (
            self.epoch % hypers["log_interval"] == 0
            or self.epoch == hypers["num_epochs"]
            or last
        ):
            train_report = {"loss": train_loss, **train_metrics.report()}
            val_report = {"loss": val_loss, **val_metrics.report()} if val else {}
            logger.info(
                epoch_line(self.epoch, self.schedule.value(), train_report, val_report)
            )
            row = {
                "epoch": self.epoch,
                "learning_rate": self.schedule.value(),
                "time_s": time.perf_counter() - started,
            }
            row.update({f"train {k}": v for k, v in train_report.items()})
            row.update({f"val {k}": v for k, v in val_report.items()})
            if steps.world.is_main:
                csv_log.write(row)
            self.observers.epoch_done(row)

    def before_training(self, model: ModelInterface, train: Sequence[Structure]):
        """A hook for architectures: what the model must learn from the
        training set before the loop starts (every process gets the same)."""

    def _select_best(self, model, report: dict) -> None:
        """Keep the weights with the lowest ``best_model_metric`` and count the
        epochs without improvement (for early stopping)."""
        metric = self.hypers.get("best_model_metric", "loss")
        if metric not in report:
            raise UserError(
                f"architecture.training.best_model_metric is '{metric}', which is "
                f"not a validation metric of this run. Choose one of: "
                f"{', '.join(repr(k) for k in report)}."
            )
        value = report[metric]
        if math.isfinite(value) and value < self.best_loss:
            self.best_loss = value
            self.best_state = copy.deepcopy(model.state_dict())
            self.epochs_without_improvement = 0
        else:
            self.epochs_without_improvement += 1

    def should_stop_early(self) -> bool:
        patience = self.hypers.get("early_stopping_patience", 0)
        return patience > 0 and self.epochs_without_improvement >= patience

    # ------------------------------------------------------------ checkpoints
    def save_checkpoint(self, model: ModelInterface, path: str) -> None:
        """Write model and trainer state; never over a good file with NaN weights.
        Under torch.distributed only rank 0 writes (all hold the same state)."""
        if not all(bool(torch.isfinite(p).all()) for p in model.parameters()):
            raise UserError(
                f"the model weights contain NaN or Inf values: {path} was not "
                "written, so the previous checkpoint stays intact. Lower the "
                "learning rate or check the data for outliers."
            )
        if not distributed.current().is_main:
            return
        checkpoint = {
            "architecture_name": architecture_name(type(model).__module__),
            "atomtrain_version": __version__,
            **model.get_checkpoint(),
            "lora_state_dict": None,
            "trainer_ckpt_version": self.__checkpoint_version__,
            "train_hypers": self.hypers,
            "epoch": self.epoch,
            "epoch_progress": self.progress.to_dict(),
            "optimizer_state_dict": (
                self.optimizer.state_dict() if self.optimizer is not None else None
            ),
            "schedule_state": (
                self.schedule.state_dict() if self.schedule is not None else None
            ),
            "best_loss": self.best_loss,
            "best_model_state_dict": self.best_state,
            "shuffle_seed": self.shuffle_seed,
            "nonfinite_steps": self.nonfinite_steps,
            "spike_guard": self.spikes.state_dict(),
            "ema_state_dict": self.ema.average if self.ema is not None else None,
            "epochs_without_improvement": self.epochs_without_improvement,
            "elapsed_time": (
                self.clock.elapsed() if self.clock is not None else self.elapsed_before
            ),
            "stage_two": self.stage_two,
        }
        if any(isinstance(m, lora.LoraLinear) for m in model.modules()):
            self._merge_lora(checkpoint)
        atomic_save(checkpoint, path)

    def _merge_lora(self, checkpoint: dict) -> None:
        """Checkpoints hold the merged weights where every reader looks, and the
        unmerged ones (with the EMA's) only for restarts."""
        scaling = lora.scaling_of(self.hypers)
        raw = checkpoint["model_state_dict"]
        checkpoint["lora_state_dict"] = {
            "model": raw,
            "ema": checkpoint["ema_state_dict"],
        }
        for key in ("model_state_dict", "best_model_state_dict", "ema_state_dict"):
            if checkpoint[key] is not None:
                checkpoint[key] = lora.merged_state_dict(checkpoint[key], scaling)

    @classmethod
    def load_checkpoint(
        cls, checkpoint: Dict[str, Any], hypers: TrainingHypers, context: Context
    ) -> "StandardTrainer":
        checkpoint = cls.upgrade_checkpoint(checkpoint)
        trainer = cls(hypers)
        if context == "restart":
            trainer.epoch = checkpoint["epoch"]
            trainer.best_loss = checkpoint["best_loss"]
            trainer.best_state = checkpoint["best_model_state_dict"]
            trainer.shuffle_seed = checkpoint["shuffle_seed"]
            trainer.nonfinite_steps = checkpoint.get("nonfinite_steps", 0)
            if checkpoint.get("spike_guard"):
                trainer.spikes.load_state_dict(checkpoint["spike_guard"])
            trainer.ema_state = checkpoint.get("ema_state_dict")
            if checkpoint.get("lora_state_dict"):
                trainer.lora_state = checkpoint["lora_state_dict"]["model"]
                trainer.ema_state = checkpoint["lora_state_dict"]["ema"]
            trainer.epochs_without_improvement = checkpoint.get(
                "epochs_without_improvement", 0
            )
            trainer.elapsed_before = checkpoint.get("elapsed_time", 0.0)
            trainer.stage_two = checkpoint.get("stage_two", False)
            if checkpoint.get("epoch_progress"):
                trainer.progress = EpochProgress.from_dict(checkpoint["epoch_progress"])
            if checkpoint["optimizer_state_dict"] is not None:
                trainer.state = checkpoint
        return trainer
