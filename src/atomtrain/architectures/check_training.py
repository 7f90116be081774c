"""The tiny training run and the criteria of ``arch check`` that need it."""

from __future__ import annotations

import contextlib
import copy
import csv
import logging
import os
import typing
from typing import Any, Callable, Dict, List, Optional

from atomtrain.architectures.check_report import _describe_error, _Fail  # noqa: F401
from atomtrain.errors import UserError


CHECK_DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "check_data")
N_TRAIN = 16  # the first structures of check_data/ethanol.xyz; the rest validate
# the tiny training run of the check; keys the TrainerHypers lacks are left out
CHECK_TRAINING = {
    "num_epochs": 30,
    "batch_size": 4,
    "learning_rate": 5e-3,
    "warmup_epochs": 1.0,
    "checkpoint_interval": 1000,
    "log_interval": 1,
    "early_stopping_patience": 0,
    "ema_decay": 0.0,
}
EXPERIMENTAL = ["fits", "torchscript", "defaults", "lint", "maintainers", "deps"]
STABLE = EXPERIMENTAL + ["typed-hypers", "regression", "pypi", "outputs"]
STAGE_CRITERIA = {
    "experimental": EXPERIMENTAL,
    "deprecated": EXPERIMENTAL,
    "stable": STABLE,
}


# ----------------------------------------------------------------------- context
class _Context:
    """What the criteria share: the spec, the imported modules, the data and the
    result of the tiny training run (computed once)."""

    def __init__(self, spec, model_hypers: dict, training_hypers: dict, workdir):
        self.spec = spec
        self.model_overrides = model_hypers
        self.training_overrides = training_hypers
        self.workdir = workdir
        self._cache: Dict[str, Any] = {}

    def once(self, key: str, compute: Callable[[], Any]) -> Any:
        """``compute()`` once; a failure is remembered and raised again."""
        if key not in self._cache:
            try:
                self._cache[key] = ("ok", compute())
            except _Fail as error:
                self._cache[key] = ("fail", error)
            except Exception as error:  # noqa: BLE001 - reported as a failure
                self._cache[key] = ("fail", error)
        status, value = self._cache[key]
        if status == "fail":
            raise value
        return value

    def architecture(self):
        from atomtrain.architectures.registry import import_architecture

        return self.once("architecture", lambda: import_architecture(self.spec.name))

    def documentation(self):
        from atomtrain.architectures.registry import import_documentation

        return self.once("documentation", lambda: import_documentation(self.spec.name))

    def folder(self) -> Optional[str]:
        from atomtrain.architectures.stages import package_folder

        return package_folder(self.spec.module)

    def data(self):
        return self.once("data", _read_check_data)

    def training(self) -> dict:
        return self.once("training", self._train)

    def _train(self) -> dict:
        import torch

        from atomtrain.data.info import DatasetInfo, TargetInfo

        try:
            architecture = self.architecture()
            documentation = self.documentation()
        except Exception as error:
            raise _Fail(
                f"the architecture does not import: {_describe_error(error)}",
                f"fix the error above (try 'python -c \"import {self.spec.module}\"').",
            ) from None
        model_class = architecture.__model__
        try:
            model_hypers = _resolve(
                documentation.ModelHypers, self.model_overrides, "model", self.spec
            )
            defaults = _lenient_defaults(documentation.TrainerHypers)
            tiny = {k: v for k, v in CHECK_TRAINING.items() if k in defaults}
            tiny.update(self.training_overrides)
            train_hypers = _resolve(
                documentation.TrainerHypers, tiny, "training", self.spec
            )
        except Exception as error:
            raise _Fail(
                f"the hypers of the check run are invalid: {_describe_error(error)}",
                "give every hyperparameter a valid default in documentation.py.",
            ) from None
        train_hypers.setdefault("loss", {})
        structures = self.data()
        train = structures[:N_TRAIN]
        val = structures[N_TRAIN:]
        info = DatasetInfo(
            [1, 6, 8], {"energy": TargetInfo("energy", gradients=["positions"])}
        )
        supported = list(getattr(model_class, "__supported_dtypes__", []))
        dtype = torch.float32 if torch.float32 in supported else supported[0]
        torch.manual_seed(0)
        try:
            model = model_class(copy.deepcopy(model_hypers), info)
            trainer = architecture.__trainer__(copy.deepcopy(train_hypers))
        except Exception as error:
            raise _Fail(
                f"building the model or trainer failed: {_describe_error(error)}",
                "make __init__(hypers, dataset_info) of the model and "
                "__init__(hypers) of the trainer work with the default hypers.",
            ) from None
        run_dir = os.path.join(self.workdir, "training")
        os.makedirs(run_dir, exist_ok=True)
        before = _errors(model, train, dtype, fit=True)
        try:
            with _quiet():
                trainer.train(
                    model, dtype, [torch.device("cpu")], [train], [val], run_dir
                )
        except Exception as error:
            raise _Fail(
                f"training failed: {_describe_error(error)}",
                "run 'atomtrain train' on a small dataset to debug the model's "
                "forward pass and the trainer.",
            ) from None
        checkpoint_path = os.path.join(run_dir, "model.ckpt")
        saved_error = None
        try:
            trainer.save_checkpoint(model, checkpoint_path)
        except Exception as error:
            saved_error = _describe_error(error)
        model.eval()
        return {
            "model": model,
            "dtype": dtype,
            "train": train,
            "val": val,
            "before": before,
            "after": _errors(model, train, dtype),
            "val_after": _errors(model, val, dtype),
            "run_dir": run_dir,
            "checkpoint": checkpoint_path,
            "checkpoint_error": saved_error,
        }


@contextlib.contextmanager
def _quiet():
    """Hide the per-epoch log lines of the check's tiny training."""
    logger = logging.getLogger("atomtrain")
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        logger.setLevel(level)


def _read_check_data():
    from atomtrain.data.dataset import read_dataset
    from atomtrain.options.expand import expand_dataset
    from atomtrain.options.schema import DatasetSection
    from atomtrain.options.validation import validate

    path = os.path.join(CHECK_DATA, "ethanol.xyz")
    targets = {"energy": {"key": "energy", "unit": "eV", "forces": {"key": "forces"}}}
    section = expand_dataset({"systems": path, "targets": targets}, "check")
    section = validate(DatasetSection, section).model_dump()
    structures, _ = read_dataset(section, {})
    return structures


def _fresh(structures):
    from atomtrain.data.structure import Structure

    return [
        Structure(
            types=s.types.clone(),
            positions=s.positions.clone(),
            cell=s.cell.clone(),
            pbc=s.pbc.clone(),
            targets={k: v.clone() for k, v in s.targets.items()},
            forces={k: v.clone() for k, v in s.forces.items()},
            stress={k: v.clone() for k, v in s.stress.items()},
            source=s.source,
        )
        for s in structures
    ]


def _errors(model, structures, dtype, fit: bool = False, call=None) -> dict:
    """Energy-per-atom and force RMSE (eV, eV/Å) of ``model`` on ``structures``;
    ``fit`` first fits the composition baseline (as the trainer does)."""
    import torch

    from atomtrain.data.systems import compute_neighbors
    from atomtrain.training.baseline_fit import fit_baselines
    from atomtrain.training.evaluate import predict

    structures = _fresh(structures)
    if fit:
        with torch.no_grad():
            fit_baselines(model, structures, model.dataset_info)
    requests = model.requested_neighbor_lists()
    compute_neighbors(structures, requests)
    if call is None:
        model = model.to(dtype)

        def call(systems, outputs):
            return model(systems, outputs, None)

    from atomtrain.data.info import TargetInfo

    energy = model.dataset_info.targets["energy"]  # forces are always computed
    targets = {"energy": TargetInfo("energy", energy.quantity, energy.unit)}
    targets["energy"].gradients = ["positions"]
    batch = predict(call, structures, requests, targets, dtype, torch.device("cpu"))
    n_atoms = torch.tensor([len(s) for s in structures], dtype=torch.float64)
    energies = torch.cat([s.targets["energy"] for s in structures]).reshape(-1)
    forces = torch.cat([s.forces["energy"] for s in structures])
    predicted = batch.values["energy"].detach().double().reshape(-1)
    energy_rmse = ((predicted - energies) / n_atoms).pow(2).mean().sqrt()
    force_rmse = (batch.forces["energy"].detach().double() - forces).pow(2).mean()
    return {
        "energy": float(energy_rmse),
        "forces": float(force_rmse.sqrt()),
        "forces_rms": float(forces.pow(2).mean().sqrt()),
        "finite": bool(torch.isfinite(predicted).all())
        and bool(torch.isfinite(batch.forces["energy"]).all()),
    }


def _lenient_defaults(cls) -> dict:
    """Defaults of a hypers class, leaving out typed fields without one."""
    from atomtrain.architectures.hypers import (
        _MISSING,
        defaults_of,
        is_typed,
        typed_default,
    )

    if not is_typed(cls):
        return defaults_of(cls)
    defaults = {n: typed_default(cls, n) for n in typing.get_type_hints(cls)}
    return copy.deepcopy({n: v for n, v in defaults.items() if v is not _MISSING})


def _resolve(cls, user: dict, where: str, spec) -> dict:
    """``resolve_hypers`` that tolerates missing defaults given by ``user`` (so
    that a missing default fails only the 'defaults' criterion)."""
    from atomtrain.architectures.hypers import (
        _forbid_extra,
        _plain,
        deep_merge,
        is_typed,
    )
    from atomtrain.options.validation import validate

    merged = deep_merge(_lenient_defaults(cls), user or {})
    if not is_typed(cls):
        return merged
    _forbid_extra(cls)
    validated = validate(
        cls, merged, prefix=f"architecture.{where}", context=f"'{spec.name}' hyper"
    )
    return _plain(validated)


# ---------------------------------------------------------------------- criteria
def _fits(ctx: _Context) -> str:
    result = ctx.training()
    before, after, val = result["before"], result["after"], result["val_after"]
    if not after["finite"] or not val["finite"]:
        raise _Fail(
            "the trained model predicts NaN or infinite values.",
            "check the model's forward pass for divisions by zero or log of zero.",
        )
    losses = _csv_losses(os.path.join(result["run_dir"], "train.csv"))
    if len(losses) >= 2:
        lowered = losses[-1] < losses[0]
        how = f"train loss {losses[0]:.4g} -> {losses[-1]:.4g}"
    else:
        first, last = before["forces"], after["forces"]
        lowered = last < first
        how = f"train force RMSE {first:.4g} -> {last:.4g} eV/Å"
    if not lowered:
        raise _Fail(
            f"the tiny training did not lower the loss ({how}).",
            "check that the model's outputs depend on its parameters (gradients "
            "reach every layer) and that the learning rate is reasonable.",
        )
    rmse, baseline = val["forces"], val["forces_rms"]
    if not rmse < baseline:
        raise _Fail(
            f"validation force RMSE {rmse * 1000:.1f} meV/Å does not beat the "
            f"composition baseline ({baseline * 1000:.1f} meV/Å, the RMS of the "
            f"reference forces); {how}.",
            "make forces depend on the atomic environments (a smooth descriptor "
            "of neighbour positions) and check the default hypers.",
        )
    return (
        f"{how}; validation force RMSE {rmse * 1000:.0f} meV/Å < baseline "
        f"{baseline * 1000:.0f} meV/Å"
    )


def _csv_losses(path: str) -> List[float]:
    if not os.path.isfile(path):
        return []
    with open(path, newline="") as file:
        rows = list(csv.DictReader(file))
    try:
        return [float(row["train loss"]) for row in rows if row.get("train loss")]
    except ValueError:
        return []


def _torchscript(ctx: _Context) -> str:
    import torch
    from metatomic.torch import load_atomistic_model

    from atomtrain.evaluation.models import model_call
    from atomtrain.export import save_exported

    try:
        model = ctx.training()["model"]
    except Exception:
        model = _default_model(ctx)
    path = os.path.join(ctx.workdir, "exported", "model.pt")
    try:
        exported = model.export()
    except Exception as error:
        raise _Fail(
            f"model.export() failed: {_describe_error(error)}",
            "the model must be TorchScript-compatible: type-annotate forward's "
            "arguments, avoid Python-only constructs (lambdas, **kwargs, "
            "non-tensor globals, numpy) in forward and the modules it calls; "
            "see https://pytorch.org/docs/stable/jit_language_reference.html",
        ) from None
    try:
        save_exported(exported, path)
        loaded = load_atomistic_model(path)
    except Exception as error:
        raise _Fail(
            f"saving (TorchScript compilation) or loading the exported model "
            f"failed: {_describe_error(error)}",
            "the model must be TorchScript-compatible: type-annotate forward's "
            "arguments and avoid Python-only constructs (lambdas, **kwargs, "
            "numpy) in forward and what it calls; also check the model's "
            "capabilities (outputs, atomic types, neighbour lists).",
        ) from None
    dtype = next(model.parameters()).dtype
    structures = ctx.data()[:2]
    try:
        errors = _errors(model, structures, dtype, call=model_call(loaded))
    except Exception as error:
        raise _Fail(
            f"the exported model failed to run: {_describe_error(error)}",
            "compare the exported model with the in-memory one, e.g. with the "
            "conformance suite's test_exported_matches_in_memory.",
        ) from None
    if not errors["finite"]:
        raise _Fail(
            "the exported model predicts NaN or infinite values.",
            "check the model's forward pass.",
        )
    size = os.path.getsize(path) / 1024
    del torch
    return f"exported to model.pt ({size:.0f} kB), loaded and evaluated"


def _default_model(ctx: _Context):
    from atomtrain.architectures.hypers import defaults_of
    from atomtrain.data.info import DatasetInfo, TargetInfo

    architecture = ctx.architecture()
    hypers = defaults_of(ctx.documentation().ModelHypers)
    info = DatasetInfo(
        [1, 6, 8], {"energy": TargetInfo("energy", gradients=["positions"])}
    )
    return architecture.__model__(hypers, info)


def _defaults(ctx: _Context) -> str:
    from atomtrain.architectures.hypers import defaults_of

    try:
        documentation = ctx.documentation()
    except Exception as error:
        raise _Fail(
            f"documentation.py does not import: {_describe_error(error)}",
            "documentation.py must import without the model's extra dependencies.",
        ) from None
    counts = []
    for kind in ("ModelHypers", "TrainerHypers"):
        cls = getattr(documentation, kind, None)
        if cls is None:
            raise _Fail(
                f"documentation.py defines no {kind}.",
                f"add a class {kind} (a TypedDict with defaults) to documentation.py.",
            )
        try:
            counts.append(len(defaults_of(cls)))
        except UserError as error:
            raise _Fail(
                str(error),
                "write a default after each annotation in documentation.py, e.g. "
                "'cutoff: float = 5.0'.",
            ) from None
    try:
        model = _default_model(ctx)
        ctx.architecture().__trainer__(defaults_of(documentation.TrainerHypers))
    except Exception as error:
        raise _Fail(
            f"the default hypers do not build a model and trainer: "
            f"{_describe_error(error)}",
            "make the defaults in documentation.py complete and consistent with "
            "what model.py and trainer.py read.",
        ) from None
    n_parameters = sum(p.numel() for p in model.parameters())
    return (
        f"{counts[0]} model and {counts[1]} trainer hypers; default model has "
        f"{n_parameters:,} parameters"
    )
