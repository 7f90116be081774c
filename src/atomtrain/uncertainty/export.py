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

from atomtrain.data.structure import Structure
from atomtrain.errors import UserError
from atomtrain.uncertainty.calibration import fit
from atomtrain.uncertainty.llpr import (
    Calibrated,
    feature_covariance,
    held_out,
    wrap,
)
from atomtrain.uncertainty.module import UncertaintyModel


logger = logging.getLogger("atomtrain")
DEFAULT_MEMBERS = 32
METADATA_KEY = "atomtrain.uncertainty"


def calibrate_llpr(
    model,
    train: List[Structure],
    calibration: List[Structure],
    dtype: torch.dtype,
    device: torch.device,
    n_members: int = DEFAULT_MEMBERS,
    batch_size: int = 16,
) -> tuple[UncertaintyModel, Dict[str, Calibrated]]:
    """LLPR of every scalar target of ``model``: the covariance over ``train``,
    ``alpha`` and ``varsigma`` fitted on ``calibration``."""
    try:
        model.last_layer_weights(next(iter(model.dataset_info.targets)))
    except NotImplementedError as error:
        raise UserError(f"cannot calibrate an uncertainty: {error}.") from None
    model = model.to(device=device, dtype=dtype).eval()
    calibrated: Dict[str, Calibrated] = {}
    for name, target in model.dataset_info.targets.items():
        if target.rank > 0:
            logger.warning(
                f"no uncertainty for '{name}': LLPR covers scalar targets only"
            )
            continue
        if not any(name in s.targets for s in calibration):
            raise UserError(
                f"the calibration structures have no reference values of '{name}': "
                "give a dataset whose targets section reads them."
            )
        covariance = feature_covariance(model, train, target, dtype, device, batch_size)
        data = held_out(model, calibration, target, dtype, device, batch_size)
        result = fit(covariance, data, target)
        calibrated[name] = result
        logger.info(
            f"LLPR of '{name}': covariance over {len(train)} structures, calibrated "
            f"on {data.errors.shape[0]} values; alpha {result.alpha.tolist()}, "
            f"regulariser {result.regularizer:.3g}; validation NLL "
            f"{result.nll_before:.4g} -> {result.nll_after:.4g}"
        )
    return wrap(model, calibrated, n_members), calibrated


def uncertainty_outputs(wrapper: UncertaintyModel) -> Dict[str, ModelOutput]:
    """The capabilities' entries of the uncertainty outputs, per atom."""
    outputs = {}
    for name, head in wrapper.heads.items():
        target = wrapper.model.dataset_info.targets[name]
        for output, what in (
            (head.uncertainty_output, "standard deviation of"),
            (head.ensemble_output, f"{head.n_members} last-layer ensemble members of"),
        ):
            outputs[output] = ModelOutput(
                unit=target.unit,
                sample_kind="atom",
                description=f"{what} {name} (LLPR)",
            )
    return outputs


def export_uncertainty(
    wrapper: UncertaintyModel,
    metadata: Optional[ModelMetadata] = None,
    description: Optional[dict] = None,
) -> AtomisticModel:
    """The wrapped model's export, with the uncertainty outputs added and
    ``atomtrain.uncertainty`` in the metadata (how they were calibrated)."""
    plain = wrapper.model.export(metadata)
    capabilities = plain.capabilities()
    outputs = dict(capabilities.outputs)
    outputs.update(uncertainty_outputs(wrapper))
    new_capabilities = ModelCapabilities(
        outputs=outputs,
        atomic_types=list(capabilities.atomic_types),
        interaction_range=capabilities.interaction_range,
        length_unit=capabilities.length_unit,
        supported_devices=list(capabilities.supported_devices),
        dtype=capabilities.dtype,
    )
    base = plain.metadata()
    extra = dict(base.extra)
    extra[METADATA_KEY] = json.dumps(
        {
            name: {
                "uncertainty": head.uncertainty_output,
                "ensemble": head.ensemble_output,
                **(description or {}).get(name, {}),
            }
            for name, head in wrapper.heads.items()
        }
    )
    new_metadata = ModelMetadata(
        base.name,
        base.description,
        list(base.authors),
        {k: list(v) for k, v in base.references.items()},
        extra,
    )
    return AtomisticModel(wrapper.eval(), new_metadata, new_capabilities)


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
