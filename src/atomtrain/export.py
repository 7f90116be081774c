"""Wrap a trained model as a metatomic AtomisticModel and save it."""

from __future__ import annotations

import json
import os
from typing import Optional

import torch
from metatomic.torch import AtomisticModel, ModelCapabilities, ModelMetadata

from atomtrain.architecture_names import architecture_name
from atomtrain.data.units import LENGTH_UNIT


_DTYPE_NAMES = {torch.float32: "float32", torch.float64: "float64"}


def merge_metadata(
    default: ModelMetadata, extra: Optional[ModelMetadata]
) -> ModelMetadata:
    """The architecture's metadata completed by the user's (name, authors, refs)."""
    if extra is None:
        return default
    references = {k: list(v) for k, v in default.references.items()}
    for key, refs in extra.references.items():
        references[key] = references.get(key, []) + [
            r for r in refs if r not in references.get(key, [])
        ]
    return ModelMetadata(
        name=extra.name or default.name,
        description=extra.description or default.description,
        authors=list(extra.authors)
        + [a for a in default.authors if a not in extra.authors],
        references=references,
        extra=dict(extra.extra),
    )


def export_model(model, metadata: Optional[ModelMetadata] = None) -> AtomisticModel:
    """An AtomisticModel with the capabilities of ``model`` (eval mode, its dtype)."""
    model = model.eval()
    dtype = next(model.parameters()).dtype
    interaction_range = max(
        (float(o.cutoff) for o in model.requested_neighbor_lists()), default=0.0
    )
    if getattr(model, "long_range", None) is not None:
        # metatomic's convention for explicit long-range models: every atom
        # sees every other, so domain decomposition must not cut anything
        interaction_range = float("inf")
    capabilities = ModelCapabilities(
        outputs=model.supported_outputs(),
        atomic_types=list(model.dataset_info.atomic_types),
        interaction_range=interaction_range,
        length_unit=LENGTH_UNIT,
        supported_devices=list(model.__supported_devices__),
        dtype=_DTYPE_NAMES[dtype],
    )
    metadata = merge_metadata(model.__default_metadata__, metadata)
    if not metadata.name:
        metadata.name = f"atomtrain {architecture_name(type(model).__module__)}"
    extra = dict(metadata.extra)
    # lets 'atomtrain eval' know per-atom targets and which gradients were trained
    extra["atomtrain.dataset_info"] = json.dumps(model.dataset_info.to_dict())
    metadata = ModelMetadata(
        metadata.name,
        metadata.description,
        list(metadata.authors),
        {k: list(v) for k, v in metadata.references.items()},
        extra,
    )
    return AtomisticModel(model, metadata, capabilities)


def save_exported(atomistic: AtomisticModel, path: str) -> None:
    """Save ``model.pt`` (and ``extensions/`` beside it when needed), atomically."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    tmp = os.path.join(folder, f".tmp-{os.getpid()}-{os.path.basename(path)}")
    try:
        atomistic.save(tmp, collect_extensions=os.path.join(folder, "extensions"))
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
