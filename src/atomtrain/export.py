"""Wrap a trained model as a metatomic AtomisticModel and save it."""

from __future__ import annotations

import json
import os
from typing import Dict, Optional

import torch
from metatomic.torch import AtomisticModel, ModelCapabilities, ModelMetadata

from atomtrain.architecture_names import architecture_name
from atomtrain.data.units import LENGTH_UNIT
from atomtrain.errors import UserError


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


# ----------------------------------------------------------------------------
# dispersion added at export: metatomic's DFT-D3(BJ) wrapper


D3_REFERENCES = [
    "https://doi.org/10.1063/1.3382344",  # DFT-D3
    "https://doi.org/10.1002/jcc.21759",  # Becke-Johnson damping
]


def d3_damping(functional: str) -> Dict[str, float]:
    """The Becke-Johnson damping parameters (``a1``, ``a2`` in Bohr, ``s6``,
    ``s8``) of ``functional`` in Grimme's table, as tad-dftd3 ships it."""
    try:
        from tad_dftd3.param import get_functional_params
    except ImportError:
        raise UserError(
            "atomtrain export --d3 reads the functionals' D3 damping parameters "
            "from the tad-dftd3 package, which is not installed. Install it with "
            "pip install 'atomtrain[d3]'."
        ) from None
    try:
        params = get_functional_params(functional, damping="bj")
    except KeyError:
        raise UserError(
            f"--d3 {functional}: no D3 parameters for a functional of that name. "
            f"Give a density functional of Grimme's D3(BJ) table, e.g. "
            f"{', '.join(_FUNCTIONAL_EXAMPLES)} (names are case- and hyphen-"
            "insensitive)."
        ) from None
    except ValueError:
        raise UserError(
            f"--d3 {functional}: the D3 table has no Becke-Johnson damping "
            "parameters for this functional, and metatomic's DFTD3 implements "
            "that damping only. Choose a functional with D3(BJ) parameters, e.g. "
            f"{', '.join(_FUNCTIONAL_EXAMPLES)}."
        ) from None
    return {key: float(params[key]) for key in ("a1", "a2", "s6", "s8")}


_FUNCTIONAL_EXAMPLES = ("pbe", "pbe0", "b3lyp", "r2scan", "revpbe", "tpss")


def with_d3(atomistic: AtomisticModel, functional: str) -> AtomisticModel:
    """``atomistic`` with the D3(BJ) dispersion energy of ``functional`` added
    to each of its energy outputs (and to direct forces and stress, when it has
    them), by metatomic's :class:`~metatomic.torch.dftd3.DFTD3`: forces and
    stress of the energy follow by automatic differentiation. The three-body
    term is not included."""
    from metatomic.torch.dftd3 import DFTD3

    damping = d3_damping(functional)
    outputs = atomistic.capabilities().outputs
    corrected = {
        name: damping
        for name in outputs
        if name.split("/")[0]
        in ("energy", "non_conservative_force", "non_conservative_stress")
    }
    if not any(name.split("/")[0] == "energy" for name in corrected):
        raise UserError(
            f"--d3 {functional}: the model has no energy output to add dispersion "
            f"to (its outputs are {', '.join(outputs)})."
        )
    wrapped = DFTD3.wrap(atomistic, damping_params=corrected)
    old = atomistic.metadata()
    references = {k: list(v) for k, v in old.references.items()}
    references["implementation"] = references.get("implementation", []) + [
        r for r in D3_REFERENCES if r not in references.get("implementation", [])
    ]
    extra = dict(old.extra)
    extra["atomtrain.d3"] = functional
    metadata = ModelMetadata(
        old.name,
        f"{old.description} With D3(BJ) dispersion for {functional}.".strip(),
        list(old.authors),
        references,
        extra,
    )
    return AtomisticModel(wrapped.module, metadata, declared_capabilities(wrapped))


def declared_capabilities(atomistic: AtomisticModel) -> ModelCapabilities:
    """The capabilities of ``atomistic`` without the aliases metatomic adds for
    deprecated output names (``non_conservative_forces``), which a new
    AtomisticModel would refuse as declared twice."""
    capabilities = atomistic.capabilities()
    names = getattr(atomistic, "_model_capabilities_outputs_names", None)
    outputs = capabilities.outputs
    return ModelCapabilities(
        outputs={n: outputs[n] for n in (outputs if names is None else names)},
        atomic_types=list(capabilities.atomic_types),
        interaction_range=capabilities.interaction_range,
        length_unit=capabilities.length_unit,
        supported_devices=list(capabilities.supported_devices),
        dtype=capabilities.dtype,
    )
