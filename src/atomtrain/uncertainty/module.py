"""TorchScript-able wrappers that add uncertainty outputs to trained models.

For each target with an uncertainty they offer ``{target}_uncertainty`` (the
predicted standard deviation, in the target's unit and layout: one per
Cartesian component) and ``{target}_ensemble`` (the members' predictions,
``n_properties * n_members`` properties per component), per structure or per
atom. :class:`UncertaintyOutputs` holds what every wrapper shares (which
outputs to ask the wrapped model for, the output maps); :class:`UncertaintyModel`
is LLPR and the NLL-trained shallow ensemble (last-layer features and weight
shifts), ``atomtrain.uncertainty.ensembles.DeepEnsemble`` several whole models.
"""

from typing import Dict, List, Optional, Tuple

import torch
from metatensor.torch import Labels, TensorBlock, TensorMap
from metatomic.torch import ModelOutput, NeighborListOptions, System

from atomtrain.nn.direct_forces import stress_per_volume
from atomtrain.nn.outputs import cartesian_components
from atomtrain.uncertainty.names import ensemble_name, uncertainty_name


class TargetUncertainty(torch.nn.Module):
    """What one target needs: ``sigma^2 = alpha^2 x^T A x`` for the features
    ``x`` of each component, summed like the target (``A``: for LLPR the
    regularised inverse covariance of the training features), and the shifts
    of the ensemble members' last-layer weights. ``rank`` is the target's
    Cartesian rank; ``per_volume`` marks a direct stress (a sum over atoms
    divided by the cell volume, its features too). ``sigma_from_members``
    (shallow ensembles): sigma is the members' spread around the prediction
    instead of LLPR's closed form."""

    def __init__(
        self,
        target: str,
        property_name: str,
        inverse_covariance: torch.Tensor,
        alpha: torch.Tensor,
        member_shifts: torch.Tensor,
        rank: int = 0,
        per_volume: bool = False,
        sigma_from_members: bool = False,
    ):
        super().__init__()
        self.sigma_from_members = sigma_from_members
        self.target = target
        self.uncertainty_output = uncertainty_name(target)
        self.ensemble_output = ensemble_name(target)
        self.property_name = property_name
        self.rank = rank
        self.per_volume = per_volume
        self.n_members = member_shifts.shape[1] // alpha.shape[0]
        self.register_buffer("inverse_covariance", inverse_covariance.double())
        self.register_buffer("alpha", alpha.double())
        self.register_buffer("member_shifts", member_shifts.double())

    def sigma(self, features: torch.Tensor) -> torch.Tensor:
        """Standard deviations ``(n, [3, [3,]] n_properties)`` of ``features``
        ``(n, [3**rank,] F)``."""
        x = features.to(torch.float64).reshape(-1, features.shape[-1])
        if self.sigma_from_members:
            # the members' spread around their mean, the prediction
            shifts = (x @ self.member_shifts).reshape(x.shape[0], -1, self.n_members)
            sigma = shifts.square().mean(dim=2).sqrt()
        else:
            rigidity = ((x @ self.inverse_covariance) * x).sum(dim=1).clamp(min=0.0)
            sigma = torch.sqrt(rigidity).unsqueeze(1) * self.alpha.unsqueeze(0)
        return sigma.reshape(self.layout(features.shape[0], sigma.shape[1]))

    def members(self, prediction: torch.Tensor, features: torch.Tensor):
        """Ensemble values ``(n, [3, [3,]] n_properties * n_members)``: the
        prediction plus each member's change of last-layer weights applied to
        ``features``; columns ``p * n_members + m``."""
        x = features.to(torch.float64).reshape(-1, features.shape[-1])
        shifts = x @ self.member_shifts
        rows = prediction.to(torch.float64).reshape(x.shape[0], -1)
        values = rows.repeat_interleave(self.n_members, 1) + shifts
        return values.reshape(self.layout(features.shape[0], values.shape[1]))

    def layout(self, n: int, width: int) -> List[int]:
        """The shape of ``n`` samples of ``width`` properties of this target."""
        return [n] + [3] * self.rank + [width]


def sample_features(
    atomic: torch.Tensor,
    systems: List[System],
    selected_atoms: Optional[Labels],
    per_atom: bool,
    per_volume: bool = False,
) -> Tuple[torch.Tensor, Labels]:
    """Per-atom last-layer features ``(n_atoms, [C,] F)`` of the selected
    atoms, or their sums per system (divided by the cell volume for a direct
    stress), with the sample labels that go with them."""
    device = atomic.device
    system_index: List[torch.Tensor] = []
    atom_index: List[torch.Tensor] = []
    for i, system in enumerate(systems):
        n = len(system)
        system_index.append(torch.full((n,), i, dtype=torch.int32, device=device))
        atom_index.append(torch.arange(n, dtype=torch.int32, device=device))
    sample_values = torch.stack([torch.cat(system_index), torch.cat(atom_index)], 1)
    keep = torch.ones(atomic.shape[0], dtype=torch.bool, device=device)
    if selected_atoms is not None:
        chosen = selected_atoms.values.to(device)
        keep = (sample_values.unsqueeze(1) == chosen.unsqueeze(0)).all(2).any(1)
    if per_atom:
        features = atomic[keep]
        samples = Labels(["system", "atom"], sample_values[keep])
    else:
        flat = atomic.reshape(atomic.shape[0], -1)
        masked = flat * keep.to(atomic.dtype).unsqueeze(1)
        sums = torch.zeros(
            (len(systems), flat.shape[1]), dtype=atomic.dtype, device=device
        )
        sums = sums.index_add(0, sample_values[:, 0].to(torch.long), masked)
        features = sums.reshape([len(systems)] + list(atomic.shape[1:]))
        samples = _labels("system", len(systems), device)
    if per_volume:
        # a direct stress is linear in its features: they share its division
        n, F = features.shape[0], features.shape[-1]
        block = TensorBlock(
            features.reshape(n, 3, 3, F),
            samples,
            cartesian_components(2, device),
            _labels("feature", F, device),
        )
        keys = Labels("_", torch.zeros((1, 1), dtype=torch.int32, device=device))
        stress = {"non_conservative_stress": TensorMap(keys, [block])}
        divided = stress_per_volume(stress, systems)["non_conservative_stress"]
        features = divided.block().values.reshape(features.shape)
    return features, samples


def at_samples(
    values: torch.Tensor, samples: Labels, per_atom: bool, systems: List[System]
) -> Tuple[torch.Tensor, Labels]:
    """``values`` as they are, or summed per system when they are per atom and
    ``per_atom`` is False."""
    if per_atom or samples.names == ["system"]:
        return values, samples
    index = samples.column("system").to(torch.long)
    shape = [len(systems)] + list(values.shape[1:])
    sums = torch.zeros(shape, dtype=values.dtype, device=values.device)
    labels = _labels("system", len(systems), values.device)
    return sums.index_add(0, index, values), labels


def _labels(name: str, n: int, device: torch.device) -> Labels:
    values = torch.arange(n, dtype=torch.int32, device=device).reshape(-1, 1)
    return Labels([name], values)


def as_map(
    values: torch.Tensor, samples: Labels, components: List[Labels], name: str
) -> TensorMap:
    """A one-block map of ``values`` ``(samples, components..., properties)``."""
    device = values.device
    block = TensorBlock(
        values=values,
        samples=samples,
        components=components,
        properties=_labels(name, values.shape[-1], device),
    )
    keys = Labels("_", torch.zeros((1, 1), dtype=torch.int32, device=device))
    return TensorMap(keys, [block])


class UncertaintyOutputs(torch.nn.Module):
    """What the wrappers share: the names of the uncertainty outputs of
    ``targets`` and the outputs to ask the wrapped model(s) for. Each wrapper
    defines ``compute(systems, outputs, requested, selected_atoms)``, which
    fills ``outputs`` from the model(s) called with ``requested``; the targets
    added only to build an uncertainty are dropped again."""

    def __init__(self, targets: List[str], needs_target_for_sigma: bool):
        super().__init__()
        self.targets = targets
        self.uncertainty_outputs = [uncertainty_name(t) for t in targets]
        self.ensemble_outputs = [ensemble_name(t) for t in targets]
        self.extra_outputs = self.uncertainty_outputs + self.ensemble_outputs
        self.needs_target_for_sigma = needs_target_for_sigma

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
        # members are the prediction plus shifts (or the members' predictions):
        # the target is predicted too, per atom when some output is per atom
        # (an engine asks for the energy per system and its sigma per atom)
        added: List[str] = []
        summed: List[str] = []
        for i, name in enumerate(self.targets):
            extras = [self.ensemble_outputs[i]]
            if self.needs_target_for_sigma:
                extras.append(self.uncertainty_outputs[i])
            for extra in extras:
                if extra not in outputs:
                    continue
                kind = outputs[extra].sample_kind
                if name not in requested:
                    requested[name] = ModelOutput(sample_kind=kind)
                    added.append(name)
                elif requested[name].sample_kind != kind:
                    requested[name] = ModelOutput(sample_kind="atom")
                    if name not in added:
                        summed.append(name)
        results = self.compute(systems, outputs, requested, selected_atoms)
        for name in added:
            results.pop(name)
        for name in summed:
            block = results[name].block()
            values, samples = at_samples(block.values, block.samples, False, systems)
            new = TensorBlock(values, samples, block.components, block.properties)
            results[name] = TensorMap(results[name].keys, [new])
        return results


class UncertaintyModel(UncertaintyOutputs):
    """``model`` plus the uncertainty outputs of the targets in ``heads``
    (LLPR, or the shallow ensemble). The wrapped model computes its usual
    outputs unchanged; the last-layer features of the first target asked
    about come from the same pass through the network
    (``forward_with_features``), those of any other target from one more."""

    def __init__(self, model: torch.nn.Module, heads: Dict[str, TargetUncertainty]):
        super().__init__(list(heads), needs_target_for_sigma=False)
        self.model = model
        self.heads = torch.nn.ModuleDict(heads)

    @torch.jit.unused
    def requested_neighbor_lists(self) -> List[NeighborListOptions]:
        """The wrapped model's lists (used in Python, like the model's)."""
        return self.model.requested_neighbor_lists()

    def compute(
        self,
        systems: List[System],
        outputs: Dict[str, ModelOutput],
        requested: Dict[str, ModelOutput],
        selected_atoms: Optional[Labels],
    ) -> Dict[str, TensorMap]:
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
                components = cartesian_components(head.rank, atomic.device)
                for output in [head.uncertainty_output, head.ensemble_output]:
                    if output not in outputs:
                        continue
                    per_atom = outputs[output].sample_kind == "atom"
                    features, samples = sample_features(
                        atomic, systems, selected_atoms, per_atom, head.per_volume
                    )
                    if output == head.uncertainty_output:
                        values = head.sigma(features)
                    else:
                        block = results[name].block()
                        prediction = at_samples(
                            block.values, block.samples, per_atom, systems
                        )[0]
                        values = head.members(prediction, features)
                    results[output] = as_map(
                        values.to(atomic.dtype), samples, components, head.property_name
                    )
        return results
