"""Evaluate one variant of a model's targets as the plain target.

A model trained on several levels of theory predicts ``energy/pbe`` and
``energy/r2scan`` (metatomic's ``name/variant`` convention). Evaluation data is
labelled with plain keys (``energy``, ``forces``), so ``--variant r2scan``
evaluates ``energy/r2scan`` as ``energy``: the model is asked for the variant,
and its predictions are named, scored and written as the plain target.
"""

from __future__ import annotations

import dataclasses
from typing import Dict, List, Optional

import torch
from metatensor.torch import Labels, TensorMap
from metatomic.torch import ModelOutput, NeighborListOptions

from atomtrain.data.info import DatasetInfo, display_name
from atomtrain.errors import UserError
from atomtrain.evaluation.models import model_call


def variants_of(info: DatasetInfo) -> List[str]:
    """The variant names found among the targets (``pbe`` of ``energy/pbe``)."""
    found = {name.rsplit("/", 1)[1] for name in info.targets if "/" in name}
    return sorted(found)


class VariantModel(torch.nn.Module):
    """``model`` seen through one variant: target ``X/variant`` is offered (and
    requested) as ``X``; targets without that variant are left out."""

    def __init__(self, model, info: DatasetInfo, variant: str, model_path: str):
        super().__init__()
        suffix = "/" + variant
        chosen = {n: n[: -len(suffix)] for n in info.targets if n.endswith(suffix)}
        if not chosen:
            offered = ", ".join(variants_of(info)) or "none"
            raise UserError(
                f"--variant {variant}: the model '{model_path}' has no target with "
                f"the variant '{variant}' (its targets: "
                f"{', '.join(display_name(n) for n in info.targets)}; variants "
                f"offered: {offered}). Give one of the offered variants, or leave "
                "--variant out."
            )
        self.inner = model
        self.plain_to_variant: Dict[str, str] = {v: k for k, v in chosen.items()}
        self.dataset_info = DatasetInfo(
            info.atomic_types,
            {
                plain: dataclasses.replace(info.targets[name], name=plain)
                for name, plain in chosen.items()
            },
            info.length_unit,
        )
        self._call = model_call(model)

    def requested_neighbor_lists(self) -> List[NeighborListOptions]:
        return self.inner.requested_neighbor_lists()

    def forward(
        self,
        systems: list,
        outputs: Dict[str, ModelOutput],
        selected_atoms: Optional[Labels] = None,
    ) -> Dict[str, TensorMap]:
        asked = {self.plain_to_variant.get(k, k): v for k, v in outputs.items()}
        results = self._call(systems, asked)
        back = {v: k for k, v in self.plain_to_variant.items()}
        return {back.get(k, k): v for k, v in results.items()}
