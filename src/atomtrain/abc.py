"""The architecture contract: what every model and trainer implements.

The framework does not know which targets an architecture supports: the
architecture checks ``dataset_info`` and refuses what it cannot fit.
"""

from __future__ import annotations

from abc import abstractmethod
from typing import Any, Dict, Generic, List, Literal, Optional, Tuple, TypeVar

import torch
from metatensor.torch import Labels, TensorMap
from metatomic.torch import (
    AtomisticModel,
    ModelMetadata,
    ModelOutput,
    NeighborListOptions,
    System,
)

from atomtrain.data.info import DatasetInfo


HypersType = TypeVar("HypersType")
Context = Literal["restart", "finetune", "export"]

MODEL_ATTRIBUTES = {
    "__checkpoint_version__": "an int, increased whenever the checkpoint changes",
    "__supported_devices__": "a list such as ['cuda', 'cpu'], by preference",
    "__supported_dtypes__": "a list such as [torch.float32, torch.float64]",
    "__default_metadata__": "a metatomic ModelMetadata with authors and references",
}
TRAINER_ATTRIBUTES = {
    "__checkpoint_version__": "an int, increased whenever the trainer state changes",
}


def check_class_attributes(cls: type, required: dict[str, str], kind: str) -> None:
    """Refuse a class missing any contract attribute, naming each one."""
    missing = [name for name in required if not hasattr(cls, name)]
    if missing:
        details = "; ".join(f"{name} ({required[name]})" for name in missing)
        raise TypeError(
            f"{kind} {cls.__module__}.{cls.__qualname__} is missing the class "
            f"attribute(s) {details}."
        )
    version = cls.__checkpoint_version__
    if not isinstance(version, int) or version < 1:
        raise TypeError(
            f"{kind} {cls.__qualname__}.__checkpoint_version__ must be an int >= 1, "
            f"got {version!r}."
        )


def check_implemented(cls: type, base: type, kind: str) -> None:
    """Refuse a class that leaves an abstract method of ``base`` unimplemented
    (torch modules do not use ABCMeta, so Python would not check it)."""
    abstract = [
        name
        for name, value in vars(base).items()
        if getattr(value, "__isabstractmethod__", False)
    ]
    missing = [name for name in abstract if getattr(cls, name) is getattr(base, name)]
    if missing:
        raise TypeError(
            f"{kind} {cls.__module__}.{cls.__qualname__} does not implement "
            f"{', '.join(sorted(missing))} of {base.__name__}."
        )


class ModelInterface(torch.nn.Module, Generic[HypersType]):
    """A model of an architecture; ``forward`` follows metatomic's model API."""

    __checkpoint_version__: int
    __supported_devices__: List[str]
    __supported_dtypes__: List[torch.dtype]
    __default_metadata__: ModelMetadata

    def __init__(self, hypers: HypersType, dataset_info: DatasetInfo) -> None:
        super().__init__()
        check_class_attributes(type(self), MODEL_ATTRIBUTES, "model")
        check_implemented(type(self), ModelInterface, "model")
        self.hypers = hypers
        self.dataset_info = dataset_info

    @abstractmethod
    def forward(
        self,
        systems: List[System],
        outputs: Dict[str, ModelOutput],
        selected_atoms: Optional[Labels] = None,
    ) -> Dict[str, TensorMap]:
        """Predict the requested ``outputs`` for ``systems``."""

    @abstractmethod
    def requested_neighbor_lists(self) -> List[NeighborListOptions]:
        """Neighbour lists the model needs (computed once per training structure,
        and by the simulation engine for exported models)."""

    @abstractmethod
    def supported_outputs(self) -> Dict[str, ModelOutput]:
        """Every output this model can compute."""

    @abstractmethod
    def restart(self, dataset_info: DatasetInfo) -> "ModelInterface":
        """This model, extended to new atomic types or targets of ``dataset_info``."""

    def grown(
        self, dataset_info: DatasetInfo
    ) -> Optional[Tuple["ModelInterface", List[int]]]:
        """For ``restart``: a fresh model with these hypers for the union of
        both datasets' types and targets (on this model's device and dtype),
        and the new position of each known type; None when nothing is new."""
        merged = self.dataset_info.union(dataset_info)
        if merged.to_dict() == self.dataset_info.to_dict():
            return None
        new = type(self)(self.hypers, merged).to(next(self.parameters()))
        known = self.dataset_info.atomic_types
        return new, [merged.atomic_types.index(t) for t in known]

    def is_head_parameter(self, name: str) -> bool:
        """Whether parameter ``name`` belongs to an output head (trained by
        ``finetune.method: heads``); override when heads are not under
        ``heads.``."""
        return name.startswith("heads.")

    def last_layer_features(self, systems: List[System], target: str) -> torch.Tensor:
        """Per-atom features ``(n_atoms, n_features)`` in which the per-atom
        prediction of ``target`` is linear: ``features @ last_layer_weights(target)``
        plus a term that does not depend on those weights (the composition
        baseline, repulsion); ``(n_atoms, 3**rank, n_features)`` for a
        Cartesian target, one row per component. Uncertainty (LLPR,
        last-layer ensembles) needs it; architectures without it get no
        uncertainty outputs."""
        raise NotImplementedError(
            f"{type(self).__name__} does not expose last-layer features, so it "
            "has no uncertainty (LLPR) outputs"
        )

    def forward_with_features(
        self,
        systems: List[System],
        outputs: Dict[str, ModelOutput],
        selected_atoms: Optional[Labels],
        target: str,
    ) -> Tuple[Dict[str, TensorMap], torch.Tensor]:
        """``forward`` and ``last_layer_features(systems, target)`` (empty for
        ``""``). This default runs the network twice; architectures that give
        both from one pass override it, so that an exported uncertainty costs
        little more than the prediction."""
        features = torch.zeros(0)
        if target != "":
            features = self.last_layer_features(systems, target)
        return self.forward(systems, outputs, selected_atoms), features

    def last_layer_weights(self, target: str) -> torch.Tensor:
        """The weights ``(n_features, n_properties)`` that map
        ``last_layer_features`` to ``target``'s per-atom prediction, built from
        the parameters (so they follow training and restarts)."""
        raise NotImplementedError(
            f"{type(self).__name__} does not expose last-layer weights"
        )

    # The methods below have standard implementations that most architectures
    # keep; override them when a model stores more than hypers and weights.

    @classmethod
    def load_checkpoint(
        cls, checkpoint: Dict[str, Any], context: Context
    ) -> "ModelInterface":
        """Rebuild a model; ``export`` uses the best weights seen in validation."""
        checkpoint = cls.upgrade_checkpoint(checkpoint)
        model = cls(
            checkpoint["model_hypers"],
            DatasetInfo.from_dict(checkpoint["dataset_info"]),
        )
        state = checkpoint["model_state_dict"]
        if context in ("export", "finetune"):  # best validated, else averaged
            state = (
                checkpoint.get("best_model_state_dict")
                or checkpoint.get("ema_state_dict")
                or state
            )
        # take the checkpoint's precision first: loading float64 weights into a
        # float32 model would round them, and a restart would not be exact
        dtypes = [t.dtype for t in state.values() if t.is_floating_point()]
        if dtypes:
            model.to(dtypes[0])
        model.load_state_dict(state)
        return model

    def get_checkpoint(self) -> Dict[str, Any]:
        """The model part of a checkpoint (hypers, dataset info, weights)."""
        return {
            "model_ckpt_version": self.__checkpoint_version__,
            "model_hypers": self.hypers,
            "dataset_info": self.dataset_info.to_dict(),
            "model_state_dict": self.state_dict(),
        }

    def export(self, metadata: Optional[ModelMetadata] = None) -> AtomisticModel:
        """Wrap this model as a metatomic AtomisticModel."""
        from atomtrain.export import export_model

        return export_model(self, metadata)

    @classmethod
    def upgrade_checkpoint(cls, checkpoint: Dict[str, Any]) -> Dict[str, Any]:
        """Run ``upgrade_from_v{n}`` static methods one version step at a time."""
        from atomtrain.training.checkpoints import upgrade_steps

        return upgrade_steps(checkpoint, cls, "model_ckpt_version", "model")


class TrainerInterface(Generic[HypersType]):
    """Trains a model; architectures configure the shared loop, never copy it."""

    __checkpoint_version__: int

    def __init__(self, hypers: HypersType) -> None:
        check_class_attributes(type(self), TRAINER_ATTRIBUTES, "trainer")
        check_implemented(type(self), TrainerInterface, "trainer")
        self.hypers = hypers

    @abstractmethod
    def train(
        self,
        model: ModelInterface,
        dtype: torch.dtype,
        devices: List[torch.device],
        train_datasets: List[Any],
        val_datasets: List[Any],
        checkpoint_dir: str,
    ) -> None:
        """Train ``model`` in place, writing intermediate checkpoints."""

    @abstractmethod
    def save_checkpoint(self, model: ModelInterface, path: str) -> None:
        """Write model and trainer state to ``path``."""

    @classmethod
    @abstractmethod
    def load_checkpoint(
        cls, checkpoint: Dict[str, Any], hypers: HypersType, context: Context
    ) -> "TrainerInterface":
        """Rebuild a trainer (with its state for ``restart``) from a checkpoint."""

    @classmethod
    def upgrade_checkpoint(cls, checkpoint: Dict[str, Any]) -> Dict[str, Any]:
        """Run ``upgrade_from_v{n}`` static methods one version step at a time."""
        from atomtrain.training.checkpoints import upgrade_steps

        return upgrade_steps(checkpoint, cls, "trainer_ckpt_version", "trainer")
