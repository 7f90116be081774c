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

from atomtrain.uncertainty.module import UncertaintyOutputs, as_map, at_samples


def fit_scale(errors: torch.Tensor, spreads: torch.Tensor) -> float:
    """The factor ``a`` minimising the Gaussian NLL of ``errors`` with sigma
    ``a * spread`` (closed form: ``a^2 = mean(error^2 / spread^2)``)."""
    e = errors.to(torch.float64).reshape(-1)
    s = spreads.to(torch.float64).reshape(-1).clamp(min=1e-300)
    return float((e.square() / s.square()).mean().sqrt())


class DeepEnsemble(UncertaintyOutputs):
    """The mean of ``members`` for every output; ``{target}_uncertainty``
    (scaled standard deviation, per component) and ``{target}_ensemble``
    (each member) for the targets in ``scales``. Members share the
    architecture's outputs and neighbour lists."""

    def __init__(self, members: List[torch.nn.Module], scales: Dict[str, float]):
        super().__init__(list(scales), needs_target_for_sigma=True)
        self.members = torch.nn.ModuleList(members)
        self.scales = scales
        self.dataset_info = members[0].dataset_info

    @torch.jit.unused
    def requested_neighbor_lists(self) -> List[NeighborListOptions]:
        return self.members[0].requested_neighbor_lists()

    def compute(
        self,
        systems: List[System],
        outputs: Dict[str, ModelOutput],
        requested: Dict[str, ModelOutput],
        selected_atoms: Optional[Labels],
    ) -> Dict[str, TensorMap]:
        results: List[Dict[str, TensorMap]] = []
        for member in self.members:
            results.append(member(systems, requested, selected_atoms))
        merged: Dict[str, TensorMap] = {}
        for name in requested:
            block = results[0][name].block()
            stacked = torch.stack([r[name].block().values for r in results])
            mean = TensorBlock(
                stacked.mean(dim=0), block.samples, block.components, block.properties
            )
            merged[name] = TensorMap(results[0][name].keys, [mean])
            for i, target in enumerate(self.targets):
                if target != name:
                    continue
                for output in [self.uncertainty_outputs[i], self.ensemble_outputs[i]]:
                    if output not in outputs:
                        continue
                    per_atom = outputs[output].sample_kind == "atom"
                    # (samples, [3, [3,]] n_properties, n_members)
                    values, samples = at_samples(
                        stacked.movedim(0, -1), block.samples, per_atom, systems
                    )
                    if output == self.uncertainty_outputs[i]:
                        values = values.std(dim=-1) * self.scales[target]
                    else:
                        # columns p * n_members + m, as for the last-layer ensembles
                        values = values.reshape(list(values.shape[:-2]) + [-1])
                    merged[output] = as_map(
                        values, samples, block.components, block.properties.names[0]
                    )
        return merged
