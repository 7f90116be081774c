"""Calibrate a trained model's uncertainty and export it with metatomic's
uncertainty outputs (``energy_uncertainty``, ``energy_ensemble``, and
``{target}_uncertainty`` / ``{target}_ensemble`` for other scalar targets)."""

from __future__ import annotations

import json
import logging
from typing import Dict, List, Optional

import torch
from metatomic.torch import (
    AtomisticModel,
    ModelCapabilities,
    ModelMetadata,
    ModelOutput,
)

from atomtrain.data.info import TargetInfo
from atomtrain.data.structure import Structure
from atomtrain.errors import UserError
from atomtrain.uncertainty.calibration import fit
from atomtrain.uncertainty.ensembles import DeepEnsemble
from atomtrain.uncertainty.llpr import (
    Calibrated,
    HeldOut,
    feature_covariance,
    held_out,
    wrap,
)
from atomtrain.uncertainty.module import UncertaintyModel
from atomtrain.uncertainty.shallow import ShallowEnsemble, fine_tune


logger = logging.getLogger("atomtrain")
DEFAULT_MEMBERS = 32
DEFAULT_EPOCHS = 200
METADATA_KEY = "atomtrain.uncertainty"


def covered_targets(model) -> Dict[str, TargetInfo]:
    """The targets of ``model`` that LLPR covers: scalars and Cartesian
    tensors whose last-layer features the architecture exposes (spherical
    targets are left out, with a warning)."""
    covered: Dict[str, TargetInfo] = {}
    for name, target in model.dataset_info.targets.items():
        if target.is_spherical:
            logger.warning(
                f"no uncertainty for '{name}': LLPR covers scalar and Cartesian "
                "targets, not spherical ones"
            )
            continue
        try:
            model.last_layer_weights(name)
        except (NotImplementedError, ValueError) as error:
            logger.warning(f"no uncertainty for '{name}': {error}")
            continue
        covered[name] = target
    if not covered:
        raise UserError(
            "cannot calibrate an uncertainty: LLPR covers the scalar and Cartesian "
            "targets whose last-layer features the architecture exposes, and the "
            f"model has none (its targets: {', '.join(model.dataset_info.targets)})."
        )
    return covered


def labelled_targets(model, calibration: List[Structure]) -> Dict[str, TargetInfo]:
    """:func:`covered_targets`, each with reference values in ``calibration``."""
    covered = covered_targets(model)
    for name in covered:
        if not any(name in s.targets for s in calibration):
            raise UserError(
                f"the calibration structures have no reference values of '{name}': "
                "give a dataset whose targets section reads them."
            )
    return covered


def calibrate_llpr(
    model,
    train: List[Structure],
    calibration: List[Structure],
    dtype: torch.dtype,
    device: torch.device,
    n_members: int = DEFAULT_MEMBERS,
    batch_size: int = 16,
) -> tuple[UncertaintyModel, Dict[str, Calibrated]]:
    """LLPR of every scalar and Cartesian target of ``model``: the covariance
    over ``train``, ``alpha`` and ``varsigma`` fitted on ``calibration``."""
    model = model.to(device=device, dtype=dtype).eval()
    calibrated: Dict[str, Calibrated] = {}
    for name, target in labelled_targets(model, calibration).items():
        covariance = feature_covariance(model, train, target, dtype, device, batch_size)
        data = held_out(model, calibration, target, dtype, device, batch_size)
        calibrated[name] = fit(covariance, data, target)
        log_llpr(name, len(train), data, calibrated[name])
    return wrap(model, calibrated, n_members), calibrated


def log_llpr(name: str, n_train: int, data: HeldOut, result: Calibrated) -> None:
    logger.info(
        f"LLPR of '{name}': covariance over {n_train} structures, calibrated "
        f"on {data.errors.shape[0]} values; alpha {result.alpha.tolist()}, "
        f"regulariser {result.regularizer:.3g}; validation NLL "
        f"{result.nll_before:.4g} -> {result.nll_after:.4g}"
    )


def calibrate_shallow_ensemble(
    model,
    train: List[Structure],
    calibration: List[Structure],
    dtype: torch.dtype,
    device: torch.device,
    n_members: int = DEFAULT_MEMBERS,
    epochs: int = DEFAULT_EPOCHS,
    batch_size: int = 16,
) -> tuple[UncertaintyModel, Dict[str, ShallowEnsemble]]:
    """LLPR as in :func:`calibrate_llpr` (covariance from the same pass over
    ``train`` that gives the training errors), then its posterior draws
    fine-tuned with the Gaussian NLL (see atomtrain.uncertainty.shallow)."""
    model = model.to(device=device, dtype=dtype).eval()
    ensembles: Dict[str, ShallowEnsemble] = {}
    for name, target in labelled_targets(model, calibration).items():
        fitted = held_out(model, train, target, dtype, device, batch_size)
        data = held_out(model, calibration, target, dtype, device, batch_size)
        covariance = fitted.features.T @ fitted.features
        llpr = fit(covariance, data, target)
        log_llpr(name, len(train), data, llpr)
        ensembles[name] = fine_tune(llpr, fitted, data, n_members, epochs)
        logger.info(
            f"shallow ensemble of '{name}': {n_members} members fine-tuned with "
            f"the Gaussian NLL on {fitted.errors.shape[0]} training values; "
            f"validation NLL {ensembles[name].nll_initial:.4g} (LLPR draws) -> "
            f"{ensembles[name].nll_after:.4g} (epoch {ensembles[name].best_epoch})"
        )
    heads = {name: ensemble.head() for name, ensemble in ensembles.items()}
    return UncertaintyModel(model, heads), ensembles


def calibrate(
    model,
    train: List[Structure],
    calibration: List[Structure],
    dtype: torch.dtype,
    device: torch.device,
    section: dict,
    batch_size: int = 16,
) -> tuple[UncertaintyModel, dict]:
    """The uncertainty ``section`` asks for (``method``, ``ensemble_members``,
    ``epochs``), with the description its exported metadata records."""
    method = section.get("method", "llpr")
    members = section.get("ensemble_members", DEFAULT_MEMBERS)
    if method == "shallow_ensemble":
        epochs = section.get("epochs", DEFAULT_EPOCHS)
        wrapper, ensembles = calibrate_shallow_ensemble(
            model, train, calibration, dtype, device, members, epochs, batch_size
        )
        return wrapper, describe_shallow(ensembles)
    wrapper, calibrated = calibrate_llpr(
        model, train, calibration, dtype, device, members, batch_size
    )
    return wrapper, describe(calibrated, members)


def uncertainty_outputs(
    base, names: Dict[str, tuple], what: str
) -> Dict[str, ModelOutput]:
    """The capabilities' entries of the uncertainty outputs, per atom;
    ``names``: target -> (uncertainty output, ensemble output, members)."""
    outputs = {}
    for name, (sigma, ensemble, members) in names.items():
        target = base.dataset_info.targets[name]
        for output, text in (
            (sigma, "standard deviation of"),
            (ensemble, f"{members} ensemble members of"),
        ):
            outputs[output] = ModelOutput(
                unit=target.unit,
                sample_kind="atom",
                description=f"{text} {name} ({what})",
            )
    return outputs


def export_with_uncertainty(
    module: torch.nn.Module,
    base,
    names: Dict[str, tuple],
    description: dict,
    metadata: Optional[ModelMetadata] = None,
) -> AtomisticModel:
    """``module`` exported with the capabilities of ``base`` (an atomtrain
    model), the uncertainty outputs added and ``atomtrain.uncertainty`` in the
    metadata (how they were obtained)."""
    plain = base.export(metadata)
    capabilities = plain.capabilities()
    outputs = dict(capabilities.outputs)
    outputs.update(uncertainty_outputs(base, names, description.get("method", "llpr")))
    new_capabilities = ModelCapabilities(
        outputs=outputs,
        atomic_types=list(capabilities.atomic_types),
        interaction_range=capabilities.interaction_range,
        length_unit=capabilities.length_unit,
        supported_devices=list(capabilities.supported_devices),
        dtype=capabilities.dtype,
    )
    old = plain.metadata()
    extra = dict(old.extra)
    extra[METADATA_KEY] = json.dumps(
        {
            name: {
                "uncertainty": sigma,
                "ensemble": ensemble,
                **description.get("targets", {}).get(name, {}),
            }
            for name, (sigma, ensemble, _) in names.items()
        }
    )
    new_metadata = ModelMetadata(
        old.name,
        old.description,
        list(old.authors),
        {k: list(v) for k, v in old.references.items()},
        extra,
    )
    return AtomisticModel(module.eval(), new_metadata, new_capabilities)


def export_uncertainty(
    wrapper: UncertaintyModel,
    metadata: Optional[ModelMetadata] = None,
    description: Optional[dict] = None,
) -> AtomisticModel:
    """An LLPR or shallow-ensemble wrapper exported with its uncertainty
    outputs (``description``: per target, what :func:`calibrate` fitted)."""
    names = {
        name: (head.uncertainty_output, head.ensemble_output, head.n_members)
        for name, head in wrapper.heads.items()
    }
    description = description or {}
    methods = {d.get("method", "llpr") for d in description.values()}
    method = methods.pop() if len(methods) == 1 else "llpr"
    details = {"method": method, "targets": description}
    return export_with_uncertainty(wrapper, wrapper.model, names, details, metadata)


def export_ensemble(
    ensemble: DeepEnsemble, metadata: Optional[ModelMetadata] = None
) -> AtomisticModel:
    """A deep ensemble exported with its uncertainty outputs."""
    names = {
        target: (sigma, members, len(ensemble.members))
        for target, sigma, members in zip(
            ensemble.targets, ensemble.uncertainty_outputs, ensemble.ensemble_outputs
        )
    }
    details = {
        "method": "deep ensemble",
        "targets": {t: {"scale": s} for t, s in ensemble.scales.items()},
    }
    base = ensemble.members[0]
    return export_with_uncertainty(ensemble, base, names, details, metadata)


def describe(calibrated: Dict[str, Calibrated], n_members: int) -> dict:
    """What the metadata records of each target's calibration."""
    return {
        name: {
            "method": "llpr",
            "alpha": c.alpha.tolist(),
            "regularizer": c.regularizer,
            "members": n_members,
            "validation_nll": c.nll_after,
        }
        for name, c in calibrated.items()
    }


def describe_shallow(ensembles: Dict[str, ShallowEnsemble]) -> dict:
    """What the metadata records of each target's shallow ensemble."""
    return {
        name: {
            "method": "shallow_ensemble",
            "scale": e.scale.tolist(),
            "members": e.n_members,
            "epoch": e.best_epoch,
            "validation_nll": e.nll_after,
            "validation_nll_llpr_draws": e.nll_initial,
        }
        for name, e in ensembles.items()
    }
