"""Equivariant read-outs shared by the architectures that carry vector features.

An architecture gives each head the invariant features ``h`` of every atom
``(N, F)`` and its polar vector features ``v`` ``(N, 3, V)`` (Cartesian x, y,
z); the heads gate equivariant products of the vectors with networks of the
invariants, so every output rotates (and reflects) as its target does.
"""

from typing import Dict, List, Optional, Tuple

import torch
from metatensor.torch import TensorMap
from metatomic.torch import ModelOutput

from atomtrain.data.info import TargetInfo, display_name
from atomtrain.errors import UserError
from atomtrain.nn.baseline import TargetBaseline
from atomtrain.nn.flat import FlatSystems
from atomtrain.nn.last_layer import linear_weights, with_bias_column
from atomtrain.nn.outputs import output_map, spherical_map
from atomtrain.nn.spherical import cartesian_to_l1, symmetric_to_l2


MAX_LAMBDA = 2


def check_equivariant(target: TargetInfo, architecture: str) -> None:
    """Refuse spherical irreps these heads cannot build (``L > 2``)."""
    for o3_lambda, o3_sigma in target.irreps:
        if o3_lambda > MAX_LAMBDA:
            raise UserError(
                f"target '{display_name(target.name)}' has an irrep with o3_lambda "
                f"{o3_lambda} (o3_sigma {o3_sigma}); {architecture} predicts "
                f"spherical targets up to o3_lambda {MAX_LAMBDA}. Split the target "
                "or leave the higher irreps out."
            )


class TargetHead(torch.nn.Module):
    """What every read-out of one target has, whatever its network: the
    target's composition baseline and scale (``baseline``, fitted before
    training), and how its per-atom values become metatomic's output. Each
    architecture subclasses it with its own network and ``forward``."""

    def __init__(self, target: TargetInfo, n_types: int):
        super().__init__()
        self.per_atom = target.per_atom
        self.rank = target.rank
        self.property_name = "energy" if target.is_energy else display_name(target.name)
        self.baseline = TargetBaseline(target.name, n_types, target.num_subtargets)

    def tensor_map(
        self,
        atomic: torch.Tensor,
        flat: FlatSystems,
        output: ModelOutput,
        mask: Optional[torch.Tensor],
    ) -> TensorMap:
        """Per-atom values as the output TensorMap (summed per system unless
        the atom-resolved output is asked for)."""
        per_atom = output.sample_kind == "atom"
        return output_map(atomic, flat, self.property_name, per_atom, mask, self.rank)

    def take_from(self, old: "TargetHead", position: List[int]) -> None:
        """Continue from ``old``, this head in a model that knew fewer types
        (a restart): every weight is kept, and what is per type moves to the
        types' new ``position``."""
        state = self.state_dict()
        with torch.no_grad():
            for key, value in old.state_dict().items():
                if key == "baseline.composition":
                    state[key][position] = value
                else:
                    state[self.moved_key(key, position)].copy_(value)

    def moved_key(self, key: str, position: List[int]) -> str:
        """Where weight ``key`` of the old head goes (heads with one network
        per type override it)."""
        return key


def take_heads(
    new: torch.nn.ModuleDict, old: torch.nn.ModuleDict, position: List[int]
) -> None:
    """Every head of ``old`` continues in the same-named head of ``new``."""
    for name, head in old.items():
        new[name].take_from(head, position)


def with_terms(
    atomic: torch.Tensor, name: str, terms: List[Dict[str, torch.Tensor]]
) -> torch.Tensor:
    """``atomic`` plus the additive physics terms (repulsion, electrostatics,
    per atom) that target ``name`` has."""
    for term in terms:
        if name in term:
            atomic = atomic + term[name]
    return atomic


def gate_network(width: int, hidden: int, n_out: int) -> torch.nn.Module:
    """Invariant gates: a small network of the invariant features."""
    return torch.nn.Sequential(
        torch.nn.LayerNorm(width),
        torch.nn.Linear(width, hidden),
        torch.nn.SiLU(),
        torch.nn.Linear(hidden, n_out),
    )


class CartesianHead(TargetHead):
    """An equivariant read-out of a Cartesian target from the vector features.

    Rank 1: ``sum_c g_c(h) v_c``; rank 2 (symmetric, e.g. a polarizability):
    ``sum_c g_c(h) v_c (x) v_c + s(h) I``. The gates ``g`` and ``s`` depend on
    invariants only, so the output rotates with the structure. The composition
    baseline only shifts the isotropic part of rank-2 targets (a constant vector
    per element would break the symmetry)."""

    def __init__(
        self, target: TargetInfo, n_types: int, width: int, vectors: int, hidden: int
    ):
        super().__init__(target, n_types)
        self.vectors = vectors
        self.n_properties = target.num_subtargets
        n_gates = vectors * self.n_properties
        if self.rank == 2:
            n_gates += self.n_properties
        self.network = gate_network(width, hidden, n_gates)

    def forward(
        self, h: torch.Tensor, v: torch.Tensor, type_index: torch.Tensor
    ) -> torch.Tensor:
        n_atoms, P, V = h.shape[0], self.n_properties, self.vectors
        gates = self.network(h)
        weights = gates[:, : V * P].reshape(n_atoms, V, P)
        scale = self.baseline.scale
        if self.rank == 1:
            return torch.einsum("axv,avp->axp", v, weights) * scale
        outer = torch.einsum("axv,ayv,avp->axyp", v, v, weights)
        isotropic = gates[:, V * P :] * scale + self.baseline.composition[type_index]
        eye = torch.eye(3, dtype=h.dtype, device=h.device).reshape(1, 3, 3, 1)
        return outer * scale + isotropic.reshape(n_atoms, 1, 1, P) * eye

    def last_layer_features(self, h: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """Features ``(N, 3**rank, F)`` of every Cartesian component in which
        the prediction is linear: the gates are a linear map of the gate
        network's last hidden layer ``z`` (with a bias column), so a component
        is ``sum_{v,k} v_x z_k W_{(v,k)}`` (rank 2: ``v_x v_y z_k``, plus
        ``delta_xy z_k`` for the isotropic gate). The composition is the part
        that does not depend on the weights (see atomtrain.uncertainty)."""
        network = self.network
        z = with_bias_column(network[2](network[1](network[0](h))))
        n_atoms, n_z = z.shape
        if self.rank == 1:
            features = torch.einsum("axv,ak->axvk", v, z)
            return features.reshape(n_atoms, 3, self.vectors * n_z)
        outer = torch.einsum("axv,ayv,ak->axyvk", v, v, z)
        outer = outer.reshape(n_atoms, 9, self.vectors * n_z)
        eye = torch.eye(3, dtype=h.dtype, device=h.device).reshape(1, 9, 1)
        return torch.cat([outer, eye * z.unsqueeze(1)], dim=2)

    def last_layer_weights(self) -> torch.Tensor:
        """The weights ``(F, n_properties)`` of :meth:`last_layer_features`,
        from the gate network's last linear map and the target's scale."""
        last = self.network[3]
        rows = linear_weights(
            last.weight,
            last.bias,
            self.baseline.scale.repeat(last.weight.shape[0] // self.n_properties),
        )
        n_z, V, P = rows.shape[0], self.vectors, self.n_properties
        per_vector = rows[:, : V * P].reshape(n_z, V, P).transpose(0, 1)
        weights = per_vector.reshape(V * n_z, P)
        if self.rank == 1:
            return weights
        return torch.cat([weights, rows[:, V * P :]], dim=0)


def _symmetric_traceless_l2(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """The ``L = 2`` part of ``sym(a (x) b)`` per channel: ``(N, 5, C)``."""
    outer = torch.einsum("axc,ayc->acxy", a, b)
    return symmetric_to_l2(0.5 * (outer + outer.transpose(2, 3))).transpose(1, 2)


class IrrepReadout(torch.nn.Module):
    """One irrep ``(L, sigma)`` of a spherical target, ``L <= 2``.

    Candidates are equivariant products of the vectors, each gated per
    property by an invariant network: ``v`` (``L = 1``, polar), ``a x b``
    (``L = 1``, axial), ``(a x b) . c`` (``L = 0``, pseudoscalar) and the
    ``L = 2`` parts of ``a (x) b`` (proper) and ``(a x b) (x) c`` (improper),
    where ``a, b, c`` are learnt channel mixtures of ``v`` (distinct, so cross
    products do not vanish). ``L = 0`` proper is the gate itself. ``extra``
    channels are natural-parity ``L`` features an architecture has already
    (ace_mp's ``l = 2`` features), added to the candidates."""

    def __init__(
        self,
        o3_lambda: int,
        o3_sigma: int,
        width: int,
        vectors: int,
        extra: int,
        n_properties: int,
        hidden: int,
    ):
        super().__init__()
        self.o3_lambda, self.o3_sigma = o3_lambda, o3_sigma
        # sigma = 1: transforms as Y_L under inversion, (-1)^L; -1: the opposite
        self.proper = o3_sigma == 1
        self.n_properties = n_properties
        if o3_lambda == 0 and self.proper:
            n_candidates, n_mixed = 1, 0
        elif o3_lambda == 1 and self.proper:
            n_candidates, n_mixed = vectors, 0
        elif o3_lambda == 1 or (o3_lambda == 2 and self.proper):
            n_candidates, n_mixed = vectors, 2
        else:  # pseudoscalar, improper L = 2: a triple of vectors
            n_candidates, n_mixed = vectors, 3
        self.extra = extra if self.proper and o3_lambda > 0 else 0
        self.n_candidates = n_candidates + self.extra
        self.n_mixed = n_mixed
        self.mix = (
            torch.nn.Linear(vectors, n_mixed * vectors, bias=False)
            if n_mixed > 0
            else torch.nn.Identity()
        )
        self.gates = gate_network(width, hidden, self.n_candidates * n_properties)

    def candidates(
        self, v: torch.Tensor, extra: torch.Tensor, n_atoms: int
    ) -> torch.Tensor:
        """``(N, 2L + 1, n_candidates)`` equivariant inputs, ``o3_mu`` order."""
        L = self.o3_lambda
        if L == 0 and self.proper:
            return torch.ones((n_atoms, 1, 1), dtype=v.dtype, device=v.device)
        if L == 1 and self.proper:
            found = cartesian_to_l1(v, dim=1)
        else:
            mixed = self.mix(v).reshape(n_atoms, 3, self.n_mixed, -1)
            a, b = mixed[:, :, 0], mixed[:, :, 1]
            if L == 2 and self.proper:
                found = _symmetric_traceless_l2(a, b)
            else:
                axial = torch.linalg.cross(a, b, dim=1)
                if L == 1:
                    found = cartesian_to_l1(axial, dim=1)
                elif L == 0:
                    found = (axial * mixed[:, :, 2]).sum(1, keepdim=True)
                else:
                    found = _symmetric_traceless_l2(axial, mixed[:, :, 2])
        if self.extra > 0:
            found = torch.cat([found, extra], dim=2)
        return found

    def forward(
        self, h: torch.Tensor, v: torch.Tensor, extra: torch.Tensor
    ) -> torch.Tensor:
        n_atoms = h.shape[0]
        gates = self.gates(h).reshape(n_atoms, self.n_candidates, self.n_properties)
        found = self.candidates(v, extra, n_atoms)
        return torch.einsum("amc,acp->amp", found, gates)


class SphericalHead(TargetHead):
    """A spherical target: one :class:`IrrepReadout` per irrep, each scaled by
    the target's scale (no composition: only a proper scalar could have one,
    and the fit treats the target as a whole)."""

    def __init__(
        self,
        target: TargetInfo,
        n_types: int,
        width: int,
        vectors: int,
        hidden: int,
        extra_l2: int = 0,
    ):
        super().__init__(target, n_types)
        self.irreps: List[Tuple[int, int]] = [(L, s) for L, s in target.irreps]
        self.readouts = torch.nn.ModuleList(
            [
                IrrepReadout(
                    L,
                    s,
                    width,
                    vectors,
                    extra_l2 if L == 2 else 0,
                    target.num_subtargets,
                    hidden,
                )
                for L, s in target.irreps
            ]
        )

    def forward(
        self, h: torch.Tensor, v: torch.Tensor, l2: torch.Tensor
    ) -> List[torch.Tensor]:
        """Per irrep, ``(N, 2L + 1, P)``; ``l2`` ``(N, 5, C)`` natural-parity
        ``l = 2`` features of the architecture (``C = 0`` when it has none)."""
        scale = self.baseline.scale
        return [readout(h, v, l2) * scale for readout in self.readouts]

    def spherical_tensor_map(
        self,
        atomic: List[torch.Tensor],
        flat: FlatSystems,
        output: ModelOutput,
        mask: Optional[torch.Tensor],
    ) -> TensorMap:
        """The irreps' values as one block each (metatensor's layout)."""
        per_atom = output.sample_kind == "atom"
        return spherical_map(
            self.irreps, atomic, flat, self.property_name, per_atom, mask
        )


class EquivariantOutputs:
    """For models with ``cartesian_heads`` and ``spherical_heads`` (module
    dictionaries of the heads above): their outputs, from the invariant
    features ``h``, the vectors ``v`` and the ``l = 2`` features ``l2``."""

    def cartesian_last_layer(
        self, h: torch.Tensor, v: torch.Tensor, target: str
    ) -> torch.Tensor:
        """The last-layer features of Cartesian ``target`` ``(N, 3**rank, F)``,
        empty when ``target`` is not one of the Cartesian heads."""
        for name, head in self.cartesian_heads.items():
            if name == target:
                return head.last_layer_features(h, v)
        return torch.zeros(0, dtype=h.dtype, device=h.device)

    def cartesian_last_layer_weights(self, target: str) -> torch.Tensor:
        for name, head in self.cartesian_heads.items():
            if name == target:
                return head.last_layer_weights()
        raise ValueError("no last-layer weights for target " + target)

    def equivariant_outputs(
        self,
        h: torch.Tensor,
        v: torch.Tensor,
        l2: torch.Tensor,
        type_index: torch.Tensor,
        flat: FlatSystems,
        outputs: Dict[str, ModelOutput],
        mask: Optional[torch.Tensor],
    ) -> Dict[str, TensorMap]:
        results: Dict[str, TensorMap] = {}
        for name, head in self.cartesian_heads.items():
            if name in outputs:
                atomic = head(h, v, type_index)
                results[name] = head.tensor_map(atomic, flat, outputs[name], mask)
        for name, head in self.spherical_heads.items():
            if name in outputs:
                irreps = head(h, v, l2)
                output = outputs[name]
                results[name] = head.spherical_tensor_map(irreps, flat, output, mask)
        return results
