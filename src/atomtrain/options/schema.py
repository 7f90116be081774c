"""The base options schema (everything but the architecture's own hypers)."""

from __future__ import annotations

from typing import Literal, Optional, Union

from pydantic import BaseModel, ConfigDict, Field


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class GradientSection(_Strict):
    read_from: str
    key: str
    auto: bool = False  # read only when the file has the key


class TargetSection(_Strict):
    quantity: str = "energy"
    read_from: str
    key: str
    unit: str = ""
    per_atom: bool = False
    num_subtargets: int = Field(1, ge=1)
    forces: Union[GradientSection, Literal[False]] = False
    stress: Union[GradientSection, Literal[False]] = False
    virial: Union[GradientSection, Literal[False]] = False


class SystemsSection(_Strict):
    read_from: str
    reader: Literal["ase"] = "ase"
    length_unit: str = "angstrom"


class DatasetSection(_Strict):
    systems: SystemsSection
    targets: dict[str, TargetSection] = Field(default_factory=dict)


class LossTerm(_Strict):
    type: Literal["mse", "mae", "huber"] = "mse"
    weight: float = Field(1.0, ge=0.0)
    delta: float = Field(1.0, gt=0.0)  # for huber


class TargetLoss(LossTerm):
    forces: LossTerm = Field(default_factory=LossTerm)
    stress: LossTerm = Field(default_factory=LossTerm)


class ArchitectureSection(_Strict):
    name: str
    model: dict = Field(default_factory=dict)
    training: dict = Field(default_factory=dict)


Fraction = float
DatasetOrList = Union[DatasetSection, list[DatasetSection]]


class BaseOptions(_Strict):
    architecture: ArchitectureSection
    training_set: DatasetOrList
    validation_set: Union[Fraction, DatasetOrList] = 0.1
    test_set: Union[Fraction, DatasetOrList] = 0.0
    seed: Optional[int] = Field(None, ge=0)
    device: str = "auto"
    base_precision: Literal[32, 64] = 32
    loss: dict[str, TargetLoss] = Field(default_factory=dict)
