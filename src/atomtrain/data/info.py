"""What a model needs to know about its data: types, targets and their units."""

from __future__ import annotations

from dataclasses import dataclass, field


STANDARD_OUTPUTS = ("energy", "non_conservative_force", "non_conservative_stress")


def base_name(target_name: str) -> str:
    """The name without its variant: ``energy/pbe`` -> ``energy`` (metatomic's
    convention: ``name/variant`` is one of several versions of a quantity)."""
    return target_name.split("/", 1)[0]


def output_name(target_name: str) -> str:
    """The metatomic output name of a target: standard names (and their
    variants, ``energy/pbe``) stay, others get a namespace (metatomic requires
    ``domain::name`` for non-standard outputs)."""
    if base_name(target_name) in STANDARD_OUTPUTS or "::" in target_name:
        return target_name
    return f"atomtrain::{target_name}"


def display_name(name: str) -> str:
    """The short name shown to users and written in XYZ files."""
    return name.split("::", 1)[1] if name.startswith("atomtrain::") else name


@dataclass
class TargetInfo:
    """One target: its quantity, unit, per-atom or per-structure, and gradients."""

    name: str
    quantity: str = "energy"
    unit: str = "eV"
    per_atom: bool = False
    num_subtargets: int = 1
    gradients: list[str] = field(default_factory=list)  # "positions", "strain"
    rank: int = 0  # 0: scalar(s); 1: Cartesian vector; 2: Cartesian rank-2 tensor
    # spherical targets: (o3_lambda, o3_sigma) of each irrep, in the user's order
    irreps: list[tuple[int, int]] = field(default_factory=list)

    def __post_init__(self):
        self.irreps = [(int(L), int(s)) for L, s in self.irreps]

    @property
    def is_energy(self) -> bool:
        return self.quantity == "energy"

    @property
    def is_spherical(self) -> bool:
        return bool(self.irreps)

    @property
    def is_scalar(self) -> bool:
        """Invariant numbers (a composition baseline makes sense for them)."""
        return self.rank == 0 and not self.irreps

    @property
    def components(self) -> int:
        """Components per property: 1, 3 or 9 (Cartesian), or the sum of the
        irreps' ``2 L + 1`` (spherical)."""
        if self.irreps:
            return sum(2 * L + 1 for L, _ in self.irreps)
        return 3**self.rank

    @property
    def width(self) -> int:
        """Numbers per structure (or atom): flattened components x properties."""
        return self.components * self.num_subtargets

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "quantity": self.quantity,
            "unit": self.unit,
            "per_atom": self.per_atom,
            "num_subtargets": self.num_subtargets,
            "gradients": list(self.gradients),
            "rank": self.rank,
            # only spherical targets write it: older readers know the rest
            **({"irreps": [list(i) for i in self.irreps]} if self.irreps else {}),
        }

    @classmethod
    def from_dict(cls, data: dict) -> TargetInfo:
        return cls(**data)


@dataclass
class DatasetInfo:
    """Atomic types, length unit and targets: what a model is built for."""

    atomic_types: list[int]
    targets: dict[str, TargetInfo]
    length_unit: str = "angstrom"

    def to_dict(self) -> dict:
        return {
            "atomic_types": list(self.atomic_types),
            "length_unit": self.length_unit,
            "targets": {k: v.to_dict() for k, v in self.targets.items()},
        }

    @classmethod
    def from_dict(cls, data: dict) -> DatasetInfo:
        return cls(
            atomic_types=list(data["atomic_types"]),
            length_unit=data["length_unit"],
            targets={k: TargetInfo.from_dict(v) for k, v in data["targets"].items()},
        )

    def union(self, other: DatasetInfo) -> DatasetInfo:
        """Types and targets of both (used when a model continues on new data)."""
        targets = dict(self.targets)
        targets.update({k: v for k, v in other.targets.items() if k not in targets})
        types = sorted(set(self.atomic_types) | set(other.atomic_types))
        return DatasetInfo(types, targets, self.length_unit)
