"""Deep ensembles: several independently trained models (different seeds),
their mean as the prediction, their spread, scaled by a factor fitted on
held-out data by minimising the Gaussian NLL, as the uncertainty. The exported
wrapper offers the same outputs as LLPR (``energy_uncertainty``,
``energy_ensemble``), so the two are compared on the same footing; it costs
one model evaluation per member.
"""

from typing import Dict, List, Optional

import torch
from metatensor.torch import Labels, TensorBlock, TensorMap
from metatomic.torch import ModelOutput, NeighborListOptions, System

from atomtrain.uncertainty.names import ensemble_name, uncertainty_name


def fit_scale(errors: torch.Tensor, spreads: torch.Tensor) -> float:
    """The factor ``a`` minimising the Gaussian NLL of ``errors`` with sigma
    ``a * spread`` (closed form: ``a^2 = mean(error^2 / spread^2)``)."""
    e = errors.to(torch.float64).reshape(-1)
    s = spreads.to(torch.float64).reshape(-1).clamp(min=1e-300)
    return float((e.square() / s.square()).mean().sqrt())


class DeepEnsemble(torch.nn.Module):
    """The mean of ``members`` for every output; ``{target}_uncertainty``
    (scaled standard deviation) and ``{target}_ensemble`` (each member) for
    the scalar targets in ``scales``. Members share the architecture's
    outputs and neighbour lists."""

    def __init__(self, members: List[torch.nn.Module], scales: Dict[str, float]):
        super().__init__()
        self.members = torch.nn.ModuleList(members)
        self.targets = list(scales)
        self.scales = scales
        self.uncertainty_outputs = [uncertainty_name(t) for t in scales]
        self.ensemble_outputs = [ensemble_name(t) for t in scales]
        self.dataset_info = members[0].dataset_info

    @torch.jit.unused
    def requested_neighbor_lists(self) -> List[NeighborListOptions]:
        return self.members[0].requested_neighbor_lists()

    def forward(
        self,
        systems: List[System],
        outputs: Dict[str, ModelOutput],
        selected_atoms: Optional[Labels] = None,
    ) -> Dict[str, TensorMap]:
        requested: Dict[str, ModelOutput] = {}
        for name, output in outputs.items():
            if (
                name not in self.uncertainty_outputs
                and name not in self.ensemble_outputs
            ):
                requested[name] = output
        for i, target in enumerate(self.targets):
            for extra in (self.uncertainty_outputs[i], self.ensemble_outputs[i]):
                if extra in outputs and target not in requested:
                    requested[target] = ModelOutput(
                        sample_kind=outputs[extra].sample_kind
                    )
        results: List[Dict[str, TensorMap]] = []
        for member in self.members:
            results.append(member(systems, requested, selected_atoms))
        merged: Dict[str, TensorMap] = {}
        for name in requested:
            stacked = torch.stack([r[name].block().values for r in results])
            block = results[0][name].block()
            merged[name] = self._like(block, stacked.mean(dim=0))
            for i, target in enumerate(self.targets):
                if target == name:
                    flat = stacked.reshape(stacked.shape[0], stacked.shape[1], -1)
                    if self.uncertainty_outputs[i] in outputs:
                        sigma = flat.std(dim=0) * self.scales[target]
                        merged[self.uncertainty_outputs[i]] = self._like(block, sigma)
                    if self.ensemble_outputs[i] in outputs:
                        members = flat.permute(1, 2, 0).reshape(flat.shape[1], -1)
                        merged[self.ensemble_outputs[i]] = self._like(block, members)
        for name in list(merged.keys()):
            if name not in outputs:
                merged.pop(name)
        return merged

    def _like(self, block: TensorBlock, values: torch.Tensor) -> TensorMap:
        """A one-block map with the samples of ``block`` and ``values``."""
        n = values.shape[-1]
        properties = Labels(
            block.properties.names[0:1],
            torch.arange(n, dtype=torch.int32, device=values.device).reshape(-1, 1),
        )
        components: List[Labels] = []
        if values.dim() > 2:
            components = block.components
        new = TensorBlock(values, block.samples, components, properties)
        keys = Labels("_", torch.zeros((1, 1), dtype=torch.int32, device=values.device))
        return TensorMap(keys, [new])
