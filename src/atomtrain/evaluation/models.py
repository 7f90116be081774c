"""Exported metatomic models as evaluation sees them: loaded with their
extensions, called like in-memory models, and described by the targets they
can predict (atomtrain's own metadata, or the outputs any other tool declares).
"""

from __future__ import annotations

import json
import os
from typing import Callable, Dict, Iterable, Optional

import torch
from metatensor.torch import TensorMap
from metatomic.torch import AtomisticModel, ModelOutput

from atomtrain.data.info import DatasetInfo, TargetInfo, display_name
from atomtrain.errors import UserError


ModelCall = Callable[[list, Dict[str, ModelOutput]], Dict[str, TensorMap]]
# outputs that describe a model rather than predict a labelled quantity (some
# tools declare un-namespaced ones, e.g. metatrain's "feature"): never requested
# unless the evaluation data names them
AUXILIARY_OUTPUTS = ("feature", "features", "mtt::aux::")
AUXILIARY_SUFFIXES = ("_uncertainty", "_ensemble", "last_layer_features")


def load_exported(path: str, extensions: Optional[str] = None) -> AtomisticModel:
    """The model saved at ``path``, with compiled extensions from
    ``extensions`` (default: an ``extensions/`` folder beside the model)."""
    from metatomic.torch import load_atomistic_model

    if not os.path.exists(path):
        raise UserError(f"model file '{path}' does not exist.")
    if path.endswith(".ckpt"):
        raise UserError(
            f"'{path}' is not an exported metatomic model but a checkpoint. "
            f"Export it first with 'atomtrain export {path}' and evaluate the "
            "exported model.pt, which is what ASE, LAMMPS and i-PI run."
        )
    if extensions is not None and not os.path.isdir(extensions):
        raise UserError(
            f"extensions folder '{extensions}' does not exist. Give the folder "
            "that was written beside the model when it was exported (often "
            "'extensions/'), or leave the option out."
        )
    if extensions is None:
        beside = os.path.join(os.path.dirname(os.path.abspath(path)), "extensions")
        extensions = beside if os.path.isdir(beside) else None
    try:
        return load_atomistic_model(path, extensions_directory=extensions)
    except Exception as error:
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else ""
        raise UserError(
            f"'{path}' is not an exported metatomic model that loads here "
            f"({type(error).__name__}: {first_line}). If it is an atomtrain "
            "checkpoint, export it first with 'atomtrain export model.ckpt'; if "
            "it needs compiled extensions, pass their folder with --extensions."
        ) from None


def model_call(model) -> ModelCall:
    """``call(systems, outputs)`` for an exported or an in-memory model."""
    if isinstance(model, AtomisticModel):
        from metatomic.torch import ModelEvaluationOptions

        length_unit = model.capabilities().length_unit or "angstrom"

        def call(systems, outputs):
            options = ModelEvaluationOptions(length_unit=length_unit, outputs=outputs)
            return model(systems, options, check_consistency=False)

        return call
    return lambda systems, outputs: model(systems, outputs, None)


def model_dtype(model) -> torch.dtype:
    """The floating-point type the model computes in."""
    if isinstance(model, AtomisticModel):
        return getattr(torch, model.capabilities().dtype)
    return next(model.parameters()).dtype


def is_prediction(name: str) -> bool:
    """Whether an output declared by a foreign model is a quantity to score:
    energies (and their variants ``energy/NAME``) and namespaced targets
    (``domain::name``), not features, diagnostics or uncertainties."""
    if name.startswith(AUXILIARY_OUTPUTS) or name.endswith(AUXILIARY_SUFFIXES):
        return False
    return name == "energy" or name.startswith("energy/") or "::" in name


def model_targets(model) -> DatasetInfo:
    """What an exported (or in-memory atomtrain) model predicts: atomtrain's
    stored dataset info when present, else the outputs the model declares that
    are predictions (:func:`is_prediction`), energies with forces and stress
    from autograd."""
    if not isinstance(model, AtomisticModel):
        return model.dataset_info
    stored = model.metadata().extra.get("atomtrain.dataset_info")
    if stored:
        info = DatasetInfo.from_dict(json.loads(stored))
        for target in info.targets.values():
            if target.is_energy:
                target.gradients = ["positions", "strain"]
        return info
    capabilities = model.capabilities()
    targets = {}
    for name, output in capabilities.outputs.items():
        if not is_prediction(name) or output.sample_kind not in ("system", "atom"):
            continue  # atom-pair outputs have no reference format here
        energy = name == "energy" or name.startswith("energy/")
        # a declared per-atom output can also be summed per structure, which is
        # how references are labelled: ask for per-structure values
        targets[name] = TargetInfo(
            name,
            "energy" if energy else output.quantity or "",
            output.unit,
            False,
            1,
            ["positions", "strain"] if energy else [],
        )
    return DatasetInfo(list(capabilities.atomic_types), targets)


def select_targets(
    offered: DatasetInfo, requested: Iterable[str], model_path: str
) -> DatasetInfo:
    """The targets to predict: those the evaluation data names (every one the
    model offers when it names none), refused when the model lacks one. The
    model's units are kept: references are converted to them on reading."""
    requested = list(requested)
    if not requested:
        return offered
    missing = [name for name in requested if name not in offered.targets]
    if missing:
        names = ", ".join(repr(display_name(n)) for n in missing)
        offers = ", ".join(repr(display_name(n)) for n in offered.targets) or "none"
        raise UserError(
            f"the evaluation data asks for target(s) {names}, but the model "
            f"'{model_path}' does not predict them: it offers {offers}. Remove "
            "those targets from the evaluation options, or rename them to one "
            "the model offers (a target's name is its key under 'targets')."
        )
    targets = {name: offered.targets[name] for name in requested}
    return DatasetInfo(offered.atomic_types, targets, offered.length_unit)
