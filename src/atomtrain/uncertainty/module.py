"""A TorchScript-able wrapper that adds uncertainty outputs to a trained model.

For each calibrated target it offers ``{target}_uncertainty`` (the predicted
standard deviation, in the target's unit) and ``{target}_ensemble`` (members
whose last-layer weights are drawn from the posterior), per structure or per
atom. The wrapped model computes its usual outputs unchanged; the last-layer
features of the first target asked about come from the same pass through the
network (``forward_with_features``), those of any other target from one more.
Nothing is added when no uncertainty is asked for.
"""

from typing import Dict, List, Optional

import torch
from metatensor.torch import Labels, TensorBlock, TensorMap
from metatomic.torch import ModelOutput, NeighborListOptions, System


class TargetUncertainty(torch.nn.Module):
    """What one target needs: ``sigma^2 = alpha^2 x^T A x`` for features summed
    like the target (``A``: the regularised inverse covariance of the training
    features) and the shifts of the ensemble members' last-layer weights."""

    def __init__(
        self,
        target: str,
        uncertainty_output: str,
        ensemble_output: str,
        property_name: str,
        inverse_covariance: torch.Tensor,
        alpha: torch.Tensor,
        member_shifts: torch.Tensor,
    ):
        super().__init__()
        self.target = target
        self.uncertainty_output = uncertainty_output
        self.ensemble_output = ensemble_output
        self.property_name = property_name
        self.n_members = member_shifts.shape[1] // alpha.shape[0]
        self.register_buffer("inverse_covariance", inverse_covariance.double())
        self.register_buffer("alpha", alpha.double())
        self.register_buffer("member_shifts", member_shifts.double())

    def sigma(self, features: torch.Tensor) -> torch.Tensor:
        """Standard deviations ``(n, n_properties)`` of rows of ``features``."""
        x = features.to(torch.float64)
        rigidity = ((x @ self.inverse_covariance) * x).sum(dim=1).clamp(min=0.0)
        return torch.sqrt(rigidity).unsqueeze(1) * self.alpha.unsqueeze(0)

    def members(self, prediction: torch.Tensor, features: torch.Tensor):
        """Ensemble values ``(n, n_properties * n_members)``: the prediction
        plus each member's change of last-layer weights applied to ``features``."""
        shifts = features.to(torch.float64) @ self.member_shifts
        repeated = prediction.to(torch.float64).repeat_interleave(self.n_members, 1)
        return repeated + shifts


def _labels(name: str, n: int, device: torch.device) -> Labels:
    values = torch.arange(n, dtype=torch.int32, device=device).reshape(-1, 1)
    return Labels([name], values)


class UncertaintyModel(torch.nn.Module):
    """``model`` plus the uncertainty outputs of the targets in ``heads``."""

    def __init__(self, model: torch.nn.Module, heads: Dict[str, TargetUncertainty]):
        super().__init__()
        self.model = model
        self.heads = torch.nn.ModuleDict(heads)
        extra: List[str] = []
        for head in heads.values():
            extra.append(head.uncertainty_output)
            extra.append(head.ensemble_output)
        self.extra_outputs = extra

    @torch.jit.unused
    def requested_neighbor_lists(self) -> List[NeighborListOptions]:
        """The wrapped model's lists (used in Python, like the model's)."""
        return self.model.requested_neighbor_lists()

    def forward(
        self,
        systems: List[System],
        outputs: Dict[str, ModelOutput],
        selected_atoms: Optional[Labels] = None,
    ) -> Dict[str, TensorMap]:
        requested: Dict[str, ModelOutput] = {}
        for name, output in outputs.items():
            if name not in self.extra_outputs:
                requested[name] = output
        # an ensemble is the prediction plus shifts: predict the target too
        added: List[str] = []
        for name, head in self.heads.items():
            if head.ensemble_output in outputs:
                kind = outputs[head.ensemble_output].sample_kind
                if name in requested and requested[name].sample_kind != kind:
                    raise ValueError(
                        "ask for " + name + " and its ensemble per the same samples"
                    )
                if name not in requested:
                    requested[name] = ModelOutput(sample_kind=kind)
                    added.append(name)
        # the features of the first target asked about come from the same pass
        # through the network as the predictions
        first = ""
        for name, head in self.heads.items():
            wanted = (
                head.uncertainty_output in outputs or head.ensemble_output in outputs
            )
            if wanted and first == "":
                first = name
        results, first_features = self.model.forward_with_features(
            systems, requested, selected_atoms, first
        )
        for name, head in self.heads.items():
            want_sigma = head.uncertainty_output in outputs
            want_members = head.ensemble_output in outputs
            if want_sigma or want_members:
                if name == first:
                    atomic = first_features
                else:
                    atomic = self.model.last_layer_features(systems, name)
                if want_sigma:
                    per_atom = outputs[head.uncertainty_output].sample_kind == "atom"
                    features, samples = self.gather(
                        atomic, systems, selected_atoms, per_atom
                    )
                    sigma = head.sigma(features).to(atomic.dtype)
                    results[head.uncertainty_output] = self.as_map(
                        sigma, samples, head.property_name
                    )
                if want_members:
                    per_atom = outputs[head.ensemble_output].sample_kind == "atom"
                    features, samples = self.gather(
                        atomic, systems, selected_atoms, per_atom
                    )
                    prediction = results[name].block().values
                    prediction = prediction.reshape(prediction.shape[0], -1)
                    members = head.members(prediction, features).to(atomic.dtype)
                    results[head.ensemble_output] = self.as_map(
                        members, samples, head.property_name
                    )
        for name in added:
            results.pop(name)
        return results

    def gather(
        self,
        atomic: torch.Tensor,
        systems: List[System],
        selected_atoms: Optional[Labels],
        per_atom: bool,
    ):
        """Per-atom features of the selected atoms, or their sums per system,
        with the sample labels that go with them."""
        device = atomic.device
        system_index: List[torch.Tensor] = []
        atom_index: List[torch.Tensor] = []
        for i, system in enumerate(systems):
            n = len(system)
            system_index.append(torch.full((n,), i, dtype=torch.int32, device=device))
            atom_index.append(torch.arange(n, dtype=torch.int32, device=device))
        sample_values = torch.stack(
            [torch.cat(system_index), torch.cat(atom_index)], dim=1
        )
        keep = torch.ones(atomic.shape[0], dtype=torch.bool, device=device)
        if selected_atoms is not None:
            chosen = selected_atoms.values.to(device)
            keep = (
                (sample_values.unsqueeze(1) == chosen.unsqueeze(0))
                .all(dim=2)
                .any(dim=1)
            )
        if per_atom:
            return atomic[keep], Labels(["system", "atom"], sample_values[keep])
        masked = atomic * keep.to(atomic.dtype).unsqueeze(1)
        sums = torch.zeros(
            (len(systems), atomic.shape[1]), dtype=atomic.dtype, device=device
        )
        sums = sums.index_add(0, sample_values[:, 0].to(torch.long), masked)
        return sums, _labels("system", len(systems), device)

    def as_map(self, values: torch.Tensor, samples: Labels, name: str) -> TensorMap:
        device = values.device
        block = TensorBlock(
            values=values,
            samples=samples,
            components=torch.jit.annotate(List[Labels], []),
            properties=_labels(name, values.shape[1], device),
        )
        keys = Labels("_", torch.zeros((1, 1), dtype=torch.int32, device=device))
        return TensorMap(keys, [block])
