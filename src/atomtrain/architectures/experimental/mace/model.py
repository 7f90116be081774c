"""MACE's blocks (``mace.modules``) on atomtrain's flat neighbour graph.

The blocks are taken from a ``mace.modules.MACE`` built from the hypers; the
forward pass is MACE's, except that the edge vectors are atomtrain's neighbour
vectors (so forces and stress flow through them by autograd, as for every other
architecture) and that MACE's atomic reference energies and scale-shift are
replaced by atomtrain's composition baseline.
"""

import contextlib
import copy
import io
import os
import warnings
from typing import Dict, List, Optional

import numpy as np
import torch
from metatensor.torch import Labels, TensorMap
from metatomic.torch import (
    AtomisticModel,
    ModelMetadata,
    ModelOutput,
    NeighborListOptions,
    System,
)

from atomtrain.abc import ModelInterface
from atomtrain.architectures.experimental.mace.documentation import ModelHypers
from atomtrain.data.info import DatasetInfo, display_name
from atomtrain.errors import UserError
from atomtrain.nn.baseline import TargetBaseline, TypeIndex
from atomtrain.nn.flat import FlatSystems, flatten_systems, selected_mask
from atomtrain.nn.heads import with_terms
from atomtrain.nn.outputs import declared_outputs, output_map
from atomtrain.nn.terms import AdditiveTerms
from atomtrain.nn.zbl import make_zbl, upgrade_without_zbl


def _import_mace():
    """``mace.modules`` and ``e3nn.o3``.

    Importing ``mace`` sets ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1`` for the whole
    process (e3nn reads its constants with a plain ``torch.load``); it is undone
    after the import so that other ``torch.load`` calls keep their safe default.
    The import also prints a note about an optional CUDA library on stdout, which
    would mix with atomtrain's output.
    """
    name = "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD"
    previous = os.environ.get(name)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            import mace.modules
            from e3nn import o3
    finally:
        if previous is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = previous
    return mace.modules, o3


modules, o3 = _import_mace()


@contextlib.contextmanager
def quiet_torchscript():
    """e3nn scripts its blocks when they are built and exported, and TorchScript
    warns (dozens of times, harmlessly) about how they annotate attributes."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "The TorchScript type system")
        warnings.filterwarnings("ignore", "`torch.jit.trace", DeprecationWarning)
        yield


def check_targets(dataset_info: DatasetInfo) -> None:
    """Refuse what MACE cannot fit here: anything but per-structure energies."""
    for name, target in dataset_info.targets.items():
        if not target.is_energy or target.per_atom or target.num_subtargets != 1:
            raise UserError(
                f"experimental.mace fits only energies (one value per structure, "
                f"with forces and stress as gradients), but target "
                f"'{display_name(name)}' is a {'per-atom ' if target.per_atom else ''}"
                f"'{target.quantity}' with {target.num_subtargets} component(s). "
                "Use another architecture (e.g. soap_bpnn) for this target."
            )
    if not dataset_info.targets:
        raise UserError("experimental.mace needs at least one energy target.")


def irreps(text: str, key: str):
    """``text`` as e3nn irreps, or a clear error naming the hyperparameter."""
    try:
        return o3.Irreps(text)
    except (ValueError, AssertionError) as error:
        raise UserError(
            f"architecture.model.{key} = '{text}' is not valid e3nn irreps ({error}); "
            "write them like '128x0e + 128x1o'."
        ) from None


def build_mace(hypers: ModelHypers, types: List[int], heads: List[str]):
    """A ``mace.modules.MACE`` from the hypers, with one read-out column per
    head; its atomic energies are zero (atomtrain's baseline replaces them)."""
    hidden = irreps(hypers["hidden_irreps"], "hidden_irreps")
    if len({mul for mul, _ in hidden}) != 1 or hidden[0].ir != o3.Irrep("0e"):
        raise UserError(
            f"architecture.model.hidden_irreps = '{hypers['hidden_irreps']}' "
            "must start with scalars (0e) and give every irrep the same number "
            "of channels, e.g. '128x0e + 128x1o'."
        )
    with quiet_torchscript():
        return modules.MACE(
            r_max=float(hypers["r_max"]),
            num_bessel=hypers["num_radial_basis"],
            num_polynomial_cutoff=hypers["num_cutoff_basis"],
            max_ell=hypers["max_ell"],
            interaction_cls=modules.interaction_classes[hypers["interaction"]],
            interaction_cls_first=modules.interaction_classes[
                hypers["interaction_first"]
            ],
            num_interactions=hypers["num_interactions"],
            num_elements=len(types),
            hidden_irreps=hidden,
            MLP_irreps=irreps(hypers["MLP_irreps"], "MLP_irreps"),
            atomic_energies=np.zeros((len(heads), len(types))),
            avg_num_neighbors=float(hypers["avg_num_neighbors"] or 1.0),
            atomic_numbers=list(types),
            correlation=hypers["correlation"],
            gate=modules.gate_dict[hypers["gate"]],
            radial_MLP=list(hypers["radial_MLP"]),
            radial_type=hypers["radial_type"],
            distance_transform=hypers["distance_transform"],
            use_reduced_cg=hypers["use_reduced_cg"],
            heads=list(heads),
        )


class Mace(ModelInterface[ModelHypers], AdditiveTerms):
    __checkpoint_version__ = 2
    __supported_devices__ = ["cuda", "cpu"]
    __supported_dtypes__ = [torch.float64, torch.float32]
    __default_metadata__ = ModelMetadata(
        references={
            "architecture": [
                "https://arxiv.org/abs/2206.07697",
                "https://arxiv.org/abs/2205.06643",
            ],
            "implementation": ["https://github.com/ACEsuit/mace"],
        }
    )

    def __init__(self, hypers: ModelHypers, dataset_info: DatasetInfo):
        # a copy: avg_num_neighbors is filled in when training starts
        super().__init__(dict(hypers), dataset_info)
        check_targets(dataset_info)
        types = list(dataset_info.atomic_types)
        self.target_names: List[str] = list(dataset_info.targets)
        mace = build_mace(hypers, types, self.target_names)
        # the blocks of MACE.forward, without its atomic energies, position
        # handling and derivatives (atomtrain computes those)
        self.node_embedding = mace.node_embedding
        self.spherical_harmonics = mace.spherical_harmonics
        self.radial_embedding = mace.radial_embedding
        self.interactions = mace.interactions
        self.products = mace.products
        self.readouts = mace.readouts
        self.register_buffer(
            "atomic_numbers", torch.tensor(types, dtype=torch.int64), persistent=False
        )
        self.n_types = len(types)
        self.n_heads = len(self.target_names)
        self.columns: Dict[str, int] = {n: i for i, n in enumerate(self.target_names)}
        self.type_index = TypeIndex(types)
        self.baselines = torch.nn.ModuleDict(
            {name: TargetBaseline(name, len(types), 1) for name in self.target_names}
        )
        self.neighbor_options = NeighborListOptions(
            cutoff=float(hypers["r_max"]), full_list=True, strict=False
        )
        self.zbl = make_zbl(hypers, dataset_info, [self.neighbor_options])
        self.long_range = None  # no long-range electrostatics in MACE
        self.outputs = declared_outputs(dataset_info, "MACE")

    # version 2 added the zbl hyper
    upgrade_from_v1 = staticmethod(upgrade_without_zbl)

    def requested_neighbor_lists(self) -> List[NeighborListOptions]:
        return [self.neighbor_options] + self.term_lists()

    def supported_outputs(self) -> Dict[str, ModelOutput]:
        return self.outputs

    def is_head_parameter(self, name: str) -> bool:
        """The read-outs are MACE's output heads."""
        return name.startswith("readouts.")

    def set_avg_num_neighbors(self, value: float) -> None:
        """Normalisation of the neighbour sums (a constant of every interaction
        block, kept in the hypers so that checkpoints rebuild the same model)."""
        for interaction in self.interactions:
            interaction.avg_num_neighbors = float(value)
        self.hypers["avg_num_neighbors"] = float(value)

    def atomic_energies(
        self, type_index: torch.Tensor, flat: FlatSystems
    ) -> torch.Tensor:
        """MACE's per-atom energies ``(n_atoms, n_targets)``, before the baseline.

        The pair vectors point from ``flat.centers`` (MACE's senders) to
        ``flat.neighbors`` (its receivers), as MACE's ``positions[receiver] -
        positions[sender] + shifts``.
        """
        centers, neighbors, vectors = flat.centers, flat.neighbors, flat.vectors
        node_attrs = torch.nn.functional.one_hot(type_index, self.n_types).to(
            vectors.dtype
        )
        edge_index = torch.stack([centers, neighbors])
        lengths = torch.linalg.vector_norm(vectors, dim=1, keepdim=True)
        node_feats = self.node_embedding(node_attrs)
        edge_attrs = self.spherical_harmonics(vectors)
        edge_feats, cutoff = self.radial_embedding(
            lengths, node_attrs, edge_index, self.atomic_numbers
        )
        features: List[torch.Tensor] = []
        for i, (interaction, product) in enumerate(
            zip(self.interactions, self.products)
        ):
            node_feats, sc = interaction(
                node_attrs=node_attrs,
                node_feats=node_feats,
                edge_attrs=edge_attrs,
                edge_feats=edge_feats,
                edge_index=edge_index,
                cutoff=cutoff,
                first_layer=(i == 0),
            )
            node_feats = product(node_feats=node_feats, sc=sc, node_attrs=node_attrs)
            features.append(node_feats)
        energies = torch.zeros(
            (type_index.shape[0], self.n_heads),
            dtype=vectors.dtype,
            device=vectors.device,
        )
        n_readouts = len(self.readouts)
        for i, readout in enumerate(self.readouts):
            energies = energies + readout(features[-1 if n_readouts == 1 else i], None)
        return energies

    def forward(
        self,
        systems: List[System],
        outputs: Dict[str, ModelOutput],
        selected_atoms: Optional[Labels] = None,
    ) -> Dict[str, TensorMap]:
        results: Dict[str, TensorMap] = {}
        if not any(name in outputs for name in self.target_names):
            return results
        flat = flatten_systems(systems, self.neighbor_options)
        type_index = self.type_index(flat.types)
        energies = self.atomic_energies(type_index, flat)
        mask = selected_mask(flat, selected_atoms)
        terms = self.additive_terms(systems, type_index, energies, outputs)
        for name, baseline in self.baselines.items():
            if name in outputs:
                column = self.columns[name]
                atomic = baseline(energies[:, column : column + 1], type_index)
                atomic = with_terms(atomic, name, terms)
                results[name] = output_map(
                    atomic, flat, "energy", outputs[name].sample_kind == "atom", mask
                )
        return results

    def restart(self, dataset_info: DatasetInfo) -> "Mace":
        """The same model when nothing is new; new elements or targets are refused
        (MACE's element embedding and read-outs would have to grow)."""
        merged = self.dataset_info.union(dataset_info)
        if merged.to_dict() == self.dataset_info.to_dict():
            return self
        known = set(self.dataset_info.atomic_types)
        new_types = sorted(set(merged.atomic_types) - known)
        new_targets = [display_name(n) for n in merged.targets if n not in self.columns]
        news = []
        if new_types:
            news.append(f"new atomic types {new_types}")
        if new_targets:
            news.append(f"new targets {new_targets}")
        raise UserError(
            f"experimental.mace cannot continue training on data with "
            f"{' and '.join(news)}: restarting or fine-tuning a MACE model with new "
            "elements or targets is not supported. Train a new model on all the data "
            f"(the model knows the types {self.dataset_info.atomic_types} and the "
            f"targets {[display_name(n) for n in self.target_names]})."
        )

    def export(self, metadata: Optional[ModelMetadata] = None) -> AtomisticModel:
        """Compile e3nn's blocks the way e3nn requires (some are traced, not
        scripted) on a copy, then wrap it as usual; the interaction range of a
        message-passing model is its cutoff times the number of layers (what a
        domain-decomposed simulation needs in its ghost atoms)."""
        from e3nn.util import jit

        from atomtrain.export import export_model

        with quiet_torchscript():
            compiled = jit.compile(copy.deepcopy(self).eval())
            atomistic = export_model(compiled, metadata)
        capabilities = atomistic.capabilities()
        capabilities.interaction_range = max(
            capabilities.interaction_range,
            float(self.hypers["r_max"] * self.hypers["num_interactions"]),
        )
        return AtomisticModel(atomistic, atomistic.metadata(), capabilities)
