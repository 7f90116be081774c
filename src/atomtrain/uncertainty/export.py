"""Calibrate a trained model's uncertainty and export it with metatomic's
uncertainty outputs (``energy_uncertainty``, ``energy_ensemble``, and
``{target}_uncertainty`` / ``{target}_ensemble`` for other scalar targets)."""

from __future__ import annotations

import json
import logging
from typing import Dict, List, Optional, Union

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
from atomtrain.export import merge_metadata
from atomtrain.uncertainty.calibration import fit
from atomtrain.uncertainty.ensembles import DeepEnsemble
from atomtrain.uncertainty.llpr import (
    Calibrated,
    feature_covariance,
    held_out,
)
from atomtrain.uncertainty.module import UncertaintyModel
from atomtrain.uncertainty.shallow import ShallowEnsemble, fine_tune


logger = logging.getLogger("atomtrain")
DEFAULT_MEMBERS = 32
DEFAULT_EPOCHS = 200
Fitted = Union[Calibrated, ShallowEnsemble]
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


def calibrate(
    model,
    train: List[Structure],
    calibration: List[Structure],
    dtype: torch.dtype,
    device: torch.device,
    section: Optional[dict] = None,
    batch_size: int = 16,
) -> tuple[UncertaintyModel, Dict[str, Fitted]]:
    """The uncertainty that ``section`` (the ``uncertainty:`` options: method,
    ensemble_members, epochs) asks for, of every scalar and Cartesian target
    of ``model``. LLPR: the covariance over ``train``, ``alpha`` and
    ``varsigma`` fitted on ``calibration``. Shallow ensemble: the same LLPR
    (the covariance from the pass over ``train`` that gives its errors), then
    its posterior draws fine-tuned with the Gaussian NLL
    (atomtrain.uncertainty.shallow)."""
    section = section or {}
    method = section.get("method", "llpr")
    members = section.get("ensemble_members", DEFAULT_MEMBERS)
    model = model.to(device=device, dtype=dtype).eval()
    fitted: Dict[str, Fitted] = {}
    for name, target in labelled_targets(model, calibration).items():
        data = held_out(model, calibration, target, dtype, device, batch_size)
        if method == "shallow_ensemble":
            errors = held_out(model, train, target, dtype, device, batch_size)
            covariance = errors.features.T @ errors.features
        else:
            covariance = feature_covariance(
                model, train, target, dtype, device, batch_size
            )
        llpr = fit(covariance, data, target)
        logger.info(
            f"LLPR of '{name}': covariance over {len(train)} structures, "
            f"calibrated on {data.errors.shape[0]} values; alpha "
            f"{llpr.alpha.tolist()}, regulariser {llpr.regularizer:.3g}; "
            f"validation NLL {llpr.nll_before:.4g} -> {llpr.nll_after:.4g}"
        )
        fitted[name] = llpr
        if method == "shallow_ensemble":
            epochs = section.get("epochs", DEFAULT_EPOCHS)
            fitted[name] = tuned = fine_tune(llpr, errors, data, members, epochs)
            logger.info(
                f"shallow ensemble of '{name}': {members} members fine-tuned with "
                f"the Gaussian NLL on {errors.errors.shape[0]} training values; "
                f"validation NLL {tuned.nll_initial:.4g} (LLPR draws) -> "
                f"{tuned.nll_after:.4g} (epoch {tuned.epoch} kept)"
            )
    heads = {
        name: f.head() if isinstance(f, ShallowEnsemble) else f.head(members)
        for name, f in fitted.items()
    }
    return UncertaintyModel(model, heads), fitted


def calibrate_llpr(model, *data, n_members: int = DEFAULT_MEMBERS, batch_size=16):
    """LLPR with ``n_members`` members; ``data``: train, calibration, dtype
    and device, as for :func:`calibrate`."""
    return calibrate(model, *data, {"ensemble_members": n_members}, batch_size)


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
    new_metadata = merge_metadata(old, ModelMetadata(extra=extra))
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


def describe(fitted: Dict[str, Fitted], n_members: int) -> dict:
    """What the metadata records of each target's calibration."""
    found = {}
    for name, f in fitted.items():
        if isinstance(f, ShallowEnsemble):
            found[name] = {
                "method": "shallow_ensemble",
                "scale": f.scale.tolist(),
                "members": f.n_members,
                "epoch": f.epoch,
                "validation_nll": f.nll_after,
                "validation_nll_llpr_draws": f.nll_initial,
            }
        else:
            found[name] = {
                "method": "llpr",
                "alpha": f.alpha.tolist(),
                "regularizer": f.regularizer,
                "members": n_members,
                "validation_nll": f.nll_after,
            }
    return found
