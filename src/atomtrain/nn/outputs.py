"""Build metatomic output TensorMaps from per-atom predictions."""

from typing import Dict, List, Optional, Tuple

import torch
from metatensor.torch import Labels, TensorBlock, TensorMap
from metatomic.torch import ModelOutput

from atomtrain.data.info import DatasetInfo, base_name, display_name
from atomtrain.nn.flat import FlatSystems


STRESS = "non_conservative_stress"


def declared_outputs(
    dataset_info: DatasetInfo, model_name: str
) -> Dict[str, ModelOutput]:
    """The metatomic outputs of a model trained on ``dataset_info``: one per
    target, in its unit, available per atom (and summed per system); a direct
    stress only per system, as metatomic defines it."""
    return {
        name: ModelOutput(
            unit=target.unit,
            sample_kind="system" if base_name(name) == STRESS else "atom",
            description=f"{display_name(name)} predicted by {model_name}",
        )
        for name, target in dataset_info.targets.items()
    }


def cartesian_components(rank: int, device: torch.device) -> List[Labels]:
    """metatomic's component labels of a Cartesian tensor of ``rank``."""
    xyz = torch.arange(3, dtype=torch.int32, device=device).reshape(-1, 1)
    if rank == 0:
        return []
    if rank == 1:
        return [Labels(["xyz"], xyz)]
    return [Labels(["xyz_1"], xyz), Labels(["xyz_2"], xyz)]


def _per_sample(
    atomic: torch.Tensor,
    flat: FlatSystems,
    per_atom: bool,
    mask: Optional[torch.Tensor],
) -> Tuple[torch.Tensor, Labels]:
    """Per-atom rows ``(n_atoms, ...)`` kept per atom (only ``mask``-ed atoms)
    or summed per system, with their sample labels."""
    device = atomic.device
    if per_atom:
        sample_values = torch.stack([flat.system_index, flat.atom_index], dim=1)
        values = atomic
        if mask is not None:
            values = values[mask]
            sample_values = sample_values[mask]
        return values, Labels(["system", "atom"], sample_values.to(torch.int32))
    shape = atomic.shape
    rows = atomic.reshape(shape[0], -1)
    if mask is not None:
        rows = rows * mask.to(rows.dtype).unsqueeze(1)
    summed = torch.zeros(
        (flat.n_systems, rows.shape[1]), dtype=rows.dtype, device=device
    ).index_add(0, flat.system_index, rows)
    new_shape: List[int] = [flat.n_systems]
    for size in shape[1:]:
        new_shape.append(size)
    samples = Labels(
        ["system"],
        torch.arange(flat.n_systems, dtype=torch.int32, device=device).reshape(-1, 1),
    )
    return summed.reshape(new_shape), samples


def _properties(name: str, n: int, device: torch.device) -> Labels:
    values = torch.arange(n, dtype=torch.int32, device=device).reshape(-1, 1)
    return Labels([name], values)


def output_map(
    atomic: torch.Tensor,
    flat: FlatSystems,
    property_name: str,
    per_atom: bool,
    mask: Optional[torch.Tensor],
    rank: int = 0,
) -> TensorMap:
    """Per-atom values ``(n_atoms, [3, [3,]] k)`` as a TensorMap, summed per
    system unless ``per_atom``; ``mask`` keeps only selected atoms; ``rank`` > 0
    values are Cartesian tensors (components ``xyz`` or ``xyz_1, xyz_2``)."""
    device = atomic.device
    values, samples = _per_sample(atomic, flat, per_atom, mask)
    block = TensorBlock(
        values=values,
        samples=samples,
        components=cartesian_components(rank, device),
        properties=_properties(property_name, atomic.shape[-1], device),
    )
    keys = Labels("_", torch.zeros((1, 1), dtype=torch.int32, device=device))
    return TensorMap(keys, [block])


def spherical_map(
    irreps: List[Tuple[int, int]],
    atomic: List[torch.Tensor],
    flat: FlatSystems,
    property_name: str,
    per_atom: bool,
    mask: Optional[torch.Tensor],
) -> TensorMap:
    """metatensor's spherical layout: one block per irrep ``(L, sigma)`` (keys
    ``o3_lambda``, ``o3_sigma``), per-atom values ``(n_atoms, 2L + 1, k)``
    with components ``o3_mu`` = -L..L, in the order of ``irreps``."""
    device = atomic[0].device
    blocks: List[TensorBlock] = []
    keys: List[List[int]] = []
    for (o3_lambda, o3_sigma), values in zip(irreps, atomic):
        summed, samples = _per_sample(values, flat, per_atom, mask)
        mu = torch.arange(-o3_lambda, o3_lambda + 1, dtype=torch.int32, device=device)
        blocks.append(
            TensorBlock(
                values=summed,
                samples=samples,
                components=[Labels(["o3_mu"], mu.reshape(-1, 1))],
                properties=_properties(property_name, values.shape[-1], device),
            )
        )
        keys.append([o3_lambda, o3_sigma])
    key_values = torch.tensor(keys, dtype=torch.int32, device=device)
    return TensorMap(Labels(["o3_lambda", "o3_sigma"], key_values), blocks)


def flat_rows(prediction: TensorMap) -> torch.Tensor:
    """A prediction as rows ``(samples, width)``: the components of each block
    flattened before its properties, blocks side by side in key order (the
    layout of references read from files)."""
    parts: List[torch.Tensor] = []
    for block in prediction.blocks():
        values = block.values
        parts.append(values.reshape(values.shape[0], -1))
    return parts[0] if len(parts) == 1 else torch.cat(parts, dim=1)
