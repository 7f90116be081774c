"""The one training loop every architecture uses (configured, never copied)."""

from __future__ import annotations

import copy
import math
import os
import time
from typing import Any, Dict, List

import torch

from atomtrain import __version__
from atomtrain.abc import Context, ModelInterface, TrainerInterface
from atomtrain.architectures.registry import architecture_of_module
from atomtrain.data.structure import Structure
from atomtrain.data.systems import compute_neighbors
from atomtrain.errors import UserError
from atomtrain.nn.baseline import TargetBaseline
from atomtrain.training.baseline_fit import fit_baselines
from atomtrain.training.checkpoints import atomic_save
from atomtrain.training.evaluate import predict, references
from atomtrain.training.hypers import TrainingHypers
from atomtrain.training.logs import CsvLog, epoch_line, logger
from atomtrain.training.losses import normalised_errors, total_loss
from atomtrain.training.metrics import Metrics
from atomtrain.training.schedule import LearningRate


def _batches(n: int, batch_size: int, seed: int | None) -> List[List[int]]:
    order = list(range(n))
    if seed is not None:
        generator = torch.Generator().manual_seed(seed)
        order = torch.randperm(n, generator=generator).tolist()
    return [order[i : i + batch_size] for i in range(0, n, batch_size)]


class StandardTrainer(TrainerInterface[TrainingHypers]):
    """AdamW, warmup + cosine/plateau schedule, gradient clipping, per-target
    weighted losses, metrics in physical units, best-model selection on the
    validation loss, and checkpoints every ``checkpoint_interval`` epochs."""

    __checkpoint_version__ = 1

    def __init__(self, hypers: TrainingHypers):
        super().__init__(hypers)
        self.epoch = 0  # epochs completed
        self.state: Dict[str, Any] | None = None  # restored on restart
        self.best_loss = math.inf
        self.best_state: Dict[str, torch.Tensor] | None = None
        self.optimizer: torch.optim.Optimizer | None = None
        self.schedule: LearningRate | None = None
        self.shuffle_seed: int | None = None

    # ------------------------------------------------------------------ train
    def train(
        self,
        model: ModelInterface,
        dtype: torch.dtype,
        devices: List[torch.device],
        train_datasets: List[List[Structure]],
        val_datasets: List[List[Structure]],
        checkpoint_dir: str,
    ) -> None:
        hypers = self.hypers
        device = devices[0]
        train = [s for dataset in train_datasets for s in dataset]
        val = [s for dataset in val_datasets for s in dataset]
        targets = model.dataset_info.targets
        requests = model.requested_neighbor_lists()
        started = time.perf_counter()
        compute_neighbors(train + val, requests)
        logger.info(
            f"neighbour lists of {len(train) + len(val)} structures computed in "
            f"{time.perf_counter() - started:.1f} s"
        )
        if self.state is None:
            fit_baselines(model, train, model.dataset_info)
        model.to(device=device, dtype=dtype)
        scales = {
            m.target_name: m.scale.detach().clone()
            for m in model.modules()
            if isinstance(m, TargetBaseline)
        }
        for name in targets:
            scales.setdefault(name, torch.ones(1, dtype=dtype, device=device))

        batches_per_epoch = math.ceil(len(train) / hypers["batch_size"])
        self.optimizer = torch.optim.AdamW(
            model.parameters(),
            lr=hypers["learning_rate"],
            weight_decay=hypers["weight_decay"],
        )
        self.schedule = LearningRate(hypers, batches_per_epoch)
        if self.state is not None:
            self.optimizer.load_state_dict(self.state["optimizer_state_dict"])
            self.schedule.load_state_dict(self.state["schedule_state"])
        if self.shuffle_seed is None:
            self.shuffle_seed = int(torch.randint(0, 2**31 - 1, (1,)).item())

        csv_log = CsvLog(os.path.join(checkpoint_dir, "train.csv"))
        loss_options = hypers.get("loss", {})
        call = lambda systems, outputs: model(systems, outputs, None)  # noqa: E731

        for epoch in range(self.epoch, hypers["num_epochs"]):
            model.train()
            train_metrics = Metrics(targets)
            train_loss_sum = 0.0
            for indices in _batches(
                len(train), hypers["batch_size"], self.shuffle_seed + epoch
            ):
                batch = [train[i] for i in indices]
                self.schedule.apply(self.optimizer)
                self.optimizer.zero_grad(set_to_none=True)
                loss, errors = self._loss(
                    call,
                    batch,
                    requests,
                    targets,
                    dtype,
                    device,
                    loss_options,
                    scales,
                    True,
                )
                loss.backward()
                if hypers["grad_clip_norm"] > 0:
                    torch.nn.utils.clip_grad_norm_(
                        model.parameters(), hypers["grad_clip_norm"]
                    )
                self.optimizer.step()
                self.schedule.step()
                train_metrics.update(errors)
                train_loss_sum += float(loss.detach()) * len(batch)
            self.epoch = epoch + 1

            model.eval()
            val_metrics = Metrics(targets)
            val_loss_sum = 0.0
            for indices in _batches(len(val), hypers["batch_size"], None):
                batch = [val[i] for i in indices]
                loss, errors = self._loss(
                    call,
                    batch,
                    requests,
                    targets,
                    dtype,
                    device,
                    loss_options,
                    scales,
                    False,
                )
                val_metrics.update(errors)
                val_loss_sum += float(loss) * len(batch)
            val_loss = val_loss_sum / max(1, len(val))
            train_loss = train_loss_sum / max(1, len(train))
            if not math.isfinite(train_loss):
                raise UserError(
                    f"the training loss became {train_loss} at epoch {self.epoch}. "
                    "Lower architecture.training.learning_rate or check the data "
                    "for outliers."
                )
            self.schedule.end_epoch(val_loss)
            if val and val_loss < self.best_loss:
                self.best_loss = val_loss
                self.best_state = copy.deepcopy(model.state_dict())

            if (
                self.epoch % hypers["log_interval"] == 0
                or self.epoch == hypers["num_epochs"]
            ):
                train_report = {"loss": train_loss, **train_metrics.report()}
                val_report = {"loss": val_loss, **val_metrics.report()} if val else {}
                logger.info(
                    epoch_line(
                        self.epoch, self.schedule.value(), train_report, val_report
                    )
                )
                row = {
                    "epoch": self.epoch,
                    "learning_rate": self.schedule.value(),
                    "time_s": time.perf_counter() - started,
                }
                row.update({f"train {k}": v for k, v in train_report.items()})
                row.update({f"val {k}": v for k, v in val_report.items()})
                csv_log.write(row)
            if self.epoch % hypers["checkpoint_interval"] == 0:
                self.save_checkpoint(
                    model, os.path.join(checkpoint_dir, f"model_{self.epoch}.ckpt")
                )

    def _loss(
        self,
        call,
        batch,
        requests,
        targets,
        dtype,
        device,
        loss_options,
        scales,
        training,
    ):
        predictions = predict(
            call, batch, requests, targets, dtype, device, training=training
        )
        reference = references(batch, targets, dtype, device)
        n_atoms = torch.tensor([len(s) for s in batch], dtype=dtype, device=device)
        volumes = torch.stack([torch.det(s.cell).abs() for s in batch]).to(
            device=device, dtype=dtype
        )
        errors = normalised_errors(predictions, reference, targets, n_atoms)
        loss = total_loss(errors, loss_options, scales, volumes / n_atoms)
        return loss, errors

    # ------------------------------------------------------------ checkpoints
    def save_checkpoint(self, model: ModelInterface, path: str) -> None:
        checkpoint = {
            "architecture_name": architecture_of_module(type(model).__module__),
            "atomtrain_version": __version__,
            **model.get_checkpoint(),
            "trainer_ckpt_version": self.__checkpoint_version__,
            "train_hypers": self.hypers,
            "epoch": self.epoch,
            "optimizer_state_dict": (
                self.optimizer.state_dict() if self.optimizer is not None else None
            ),
            "schedule_state": (
                self.schedule.state_dict() if self.schedule is not None else None
            ),
            "best_loss": self.best_loss,
            "best_model_state_dict": self.best_state,
            "shuffle_seed": self.shuffle_seed,
        }
        atomic_save(checkpoint, path)

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
            if checkpoint["optimizer_state_dict"] is not None:
                trainer.state = checkpoint
        return trainer
