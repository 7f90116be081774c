"""Build metatomic output TensorMaps from per-atom predictions."""

from typing import Dict, List, Optional

import torch
from metatensor.torch import Labels, TensorBlock, TensorMap
from metatomic.torch import ModelOutput

from atomtrain.data.info import DatasetInfo, display_name
from atomtrain.nn.flat import FlatSystems


def declared_outputs(
    dataset_info: DatasetInfo, model_name: str
) -> Dict[str, ModelOutput]:
    """The metatomic outputs of a model trained on ``dataset_info``: one per
    target, in its unit, available per atom (and summed per system)."""
    return {
        name: ModelOutput(
            unit=target.unit,
            sample_kind="atom",
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
    n_properties = atomic.shape[-1]
    shape = atomic.shape[1:]
    atomic = atomic.reshape(atomic.shape[0], -1)
    properties = Labels(
        [property_name],
        torch.arange(n_properties, dtype=torch.int32, device=device).reshape(-1, 1),
    )
    if per_atom:
        values = atomic
        sample_values = torch.stack([flat.system_index, flat.atom_index], dim=1)
        if mask is not None:
            values = values[mask]
            sample_values = sample_values[mask]
        samples = Labels(["system", "atom"], sample_values.to(torch.int32))
    else:
        if mask is not None:
            atomic = atomic * mask.to(atomic.dtype).unsqueeze(1)
        values = torch.zeros(
            (flat.n_systems, atomic.shape[1]), dtype=atomic.dtype, device=device
        )
        values = values.index_add(0, flat.system_index, atomic)
        samples = Labels(
            ["system"],
            torch.arange(flat.n_systems, dtype=torch.int32, device=device).reshape(
                -1, 1
            ),
        )
    new_shape: List[int] = [values.shape[0]]
    for size in shape:
        new_shape.append(size)
    block = TensorBlock(
        values=values.reshape(new_shape),
        samples=samples,
        components=cartesian_components(rank, device),
        properties=properties,
    )
    keys = Labels("_", torch.zeros((1, 1), dtype=torch.int32, device=device))
    blocks: List[TensorBlock] = [block]
    return TensorMap(keys, blocks)
