"""The base options schema (everything but the architecture's own hypers)."""

from __future__ import annotations

from typing import Annotated, Literal, Optional, Union

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _true_is_defaults(value):
    return {} if value is True else value


# an optional section is `false` (off), `true` (on with its defaults) or the
# section itself
TRUE_IS_DEFAULTS = BeforeValidator(_true_is_defaults)


class GradientSection(_Strict):
    read_from: str = Field(
        description=(
            "File holding the values; the expansion fills in the target's file."
        ),
    )
    key: str = Field(
        description=(
            "Key of the values in the file; the expansion fills in `forces`, "
            "`stress` or `virial`."
        ),
    )
    auto: bool = Field(
        False,
        description=(
            "Set by the expansion when a gradient is read only if the file has "
            "its key; you do not normally write it."
        ),
    )


class CartesianRank(_Strict):
    rank: Literal[1, 2] = Field(
        description=(
            "1 for a vector (dipole: 3 numbers), 2 for a rank-2 tensor "
            "(polarizability: 3x3 or 9 numbers)."
        ),
    )


class CartesianType(_Strict):
    cartesian: CartesianRank = Field(
        description="A Cartesian tensor that rotates with the structure."
    )


class Irrep(_Strict):
    o3_lambda: int = Field(
        ge=0,
        description="Angular order L of the irrep (2L + 1 components).",
    )
    o3_sigma: Literal[-1, 1] = Field(
        description=(
            "1 for a proper irrep (changes sign as the harmonics Y_L under "
            "inversion, by (-1)^L), -1 for an improper one (pseudoscalar, axial "
            "vector: the opposite sign)."
        ),
    )


class SphericalIrreps(_Strict):
    irreps: list[Irrep] = Field(
        min_length=1,
        description=(
            "The irreps of the target, in the order their components are stored."
        ),
    )


class SphericalType(_Strict):
    spherical: SphericalIrreps = Field(
        description=(
            "A tensor in metatensor's spherical basis: blocks of real spherical "
            "harmonics components (`o3_mu` = -L..L)."
        )
    )


def _type_kind(value) -> str:
    """Which kind of target type a value is meant to be, so that a mistake in
    a spherical type is reported against the spherical schema alone (tags are
    capitalised: error paths leave such union tags out)."""
    if isinstance(value, dict):
        return "Spherical" if "spherical" in value else "Cartesian"
    if isinstance(value, BaseModel):
        return "Spherical" if isinstance(value, SphericalType) else "Cartesian"
    return "Scalar"


TargetType = Annotated[
    Union[
        Annotated[Literal["scalar"], Tag("Scalar")],
        Annotated[CartesianType, Tag("Cartesian")],
        Annotated[SphericalType, Tag("Spherical")],
    ],
    Discriminator(_type_kind),
]


class TargetSection(_Strict):
    type: TargetType = Field(
        "scalar",
        description=(
            "`scalar` (invariant numbers: energies, band gaps, a density of "
            "states on a grid with `num_subtargets`), `{cartesian: {rank: 1}}` "
            "/ `{cartesian: {rank: 2}}` for vectors and rank-2 tensors, or "
            "`{spherical: {irreps: [{o3_lambda: 0, o3_sigma: 1}, {o3_lambda: 2, "
            "o3_sigma: 1}]}}` for irreducible spherical tensors (the file holds "
            "the irreps' components one after the other, each `o3_mu` = -L..L); "
            "architectures predict these with the right rotational behaviour."
        ),
    )
    quantity: str = Field(
        "energy",
        description=(
            "Physical quantity. `energy` targets are converted to eV and can have"
            " forces, stress and virial. After expansion it is `energy` for a "
            "target named `energy` and empty for other names unless set."
        ),
    )
    read_from: str = Field(
        description=(
            "File holding the target; the expansion fills in the `systems` file."
        ),
    )
    key: str = Field(
        description=(
            "Key of the value in the file (`info`, `arrays` or the ASE calculator"
            " results); the expansion fills in the target's name."
        ),
    )
    unit: str = Field(
        "",
        description=(
            "Unit of the values in the file. After expansion `eV` for energy "
            "quantities, empty otherwise. Energies are converted to eV; other "
            "quantities keep this unit."
        ),
    )
    per_atom: bool = Field(
        False,
        description=("One value per atom instead of one per structure."),
    )
    num_subtargets: int = Field(
        1,
        ge=1,
        description=("Number of values per structure (or per atom)."),
    )
    forces: Union[GradientSection, Literal[False]] = Field(
        False,
        description=(
            "Forces to read, or `false`. For energy targets the expansion reads "
            "the `forces` key when the file has it."
        ),
    )
    stress: Union[GradientSection, Literal[False]] = Field(
        False,
        description=(
            "Stress to read (3x3 or Voigt), or `false`. For energy targets the "
            "expansion reads the `stress` key when the file has it."
        ),
    )
    virial: Union[GradientSection, Literal[False]] = Field(
        False,
        description=(
            "Virial to read (periodic structures only), or `false`; turned into a"
            " stress. Ignored when a stress is read."
        ),
    )


class SystemsSection(_Strict):
    read_from: str = Field(
        description=(
            "Path of the structure file (or DeePMD-kit folder), relative to the "
            "directory `atomtrain` runs in."
        ),
    )
    reader: Literal["ase"] = Field(
        "ase",
        description=(
            "How the file is read: `ase`, the reader chosen by the path: "
            "DeePMD-kit folders through dpdata (extra `deepmd`), ASE databases "
            "(`.db`) through ase.db, any other format ASE reads through ase.io "
            "(extended XYZ recommended)."
        ),
    )
    length_unit: str = Field(
        "angstrom",
        description=(
            "Unit of positions and cells in the file; converted to Å on reading."
        ),
    )


class DatasetSection(_Strict):
    systems: SystemsSection = Field(
        description=("The file of structures. A file name is a short form."),
    )
    targets: dict[str, TargetSection] = Field(
        default_factory=dict,
        description=(
            "Targets to read, by name. A training set needs at least one target. "
            "A key string is a short form."
        ),
    )


class LossTerm(_Strict):
    type: Literal["mse", "mae", "huber"] = Field(
        "mse",
        description=("`mse`, `mae` or `huber`."),
    )
    weight: float = Field(
        1.0,
        ge=0.0,
        description=("Weight of this term in the total loss; 0 leaves it out."),
    )
    delta: float = Field(
        1.0,
        gt=0.0,
        description=("Threshold of the Huber loss (on the normalised error)."),
    )


class TargetLoss(LossTerm):
    forces: LossTerm = Field(
        default_factory=LossTerm,
        description=("Loss term of the forces of an energy target."),
    )
    stress: LossTerm = Field(
        default_factory=LossTerm,
        description=("Loss term of the stress (or virial) of an energy target."),
    )


class ArchitectureSection(_Strict):
    name: str = Field(
        description=(
            "Registry name, e.g. `soap_bpnn`, `experimental.NAME`, "
            "`deprecated.NAME` or an installed plug-in (see `atomtrain arch "
            "list`)."
        ),
    )
    model: dict = Field(
        default_factory=dict,
        description=(
            "Model hyperparameters; merged over the architecture's defaults and "
            "validated against its `ModelHypers`."
        ),
    )
    training: dict = Field(
        default_factory=dict,
        description=(
            "Trainer hyperparameters; merged over the architecture's defaults and"
            " validated against its `TrainerHypers`."
        ),
    )


class WandbSection(BaseModel):
    # any other key is passed on to wandb.init as it is (entity, tags, group, ...)
    model_config = ConfigDict(extra="allow")

    project: Optional[str] = Field(
        None,
        description=("Weights & Biases project; unset uses wandb's default."),
    )
    name: Optional[str] = Field(
        None,
        description=("Name of the run; unset lets wandb draw one."),
    )
    mode: Optional[Literal["online", "offline", "disabled"]] = Field(
        None,
        description=(
            "`online` (synchronise while training), `offline` (write the run "
            "under `OUTPUT_DIR/wandb` for a later `wandb sync`) or `disabled`; "
            "unset follows `WANDB_MODE` or wandb's default. Other keys of this "
            "section (`entity`, `tags`, `group`, ...) are passed to `wandb.init`."
        ),
    )


class LoggingSection(_Strict):
    progress_bar: Literal["auto", "always", "never"] = Field(
        "auto",
        description=(
            "Progress bars of epochs, batches and validation: `auto` shows them "
            "only when stdout and stderr are terminals, so log files stay clean."
        ),
    )
    plots: bool = Field(
        True,
        description=(
            "After training, write `learning_curves.png` and one "
            "`parity_SPLIT.png` per dataset split in the run folder (needs "
            "matplotlib: `pip install 'atomtrain[plots]'`)."
        ),
    )
    tensorboard: bool = Field(
        False,
        description=(
            "Write TensorBoard event files of every logged epoch under "
            "`OUTPUT_DIR/tensorboard` (needs `pip install 'atomtrain[tensorboard]'`)."
        ),
    )
    wandb: Annotated[Union[Literal[False], WandbSection], TRUE_IS_DEFAULTS] = Field(
        False,
        description=(
            "Log every logged epoch to Weights & Biases: `false`, `true` (wandb's "
            "defaults) or a section passed to `wandb.init` with `dir` set to the "
            "run folder (needs `pip install 'atomtrain[wandb]'`)."
        ),
    )


class UncertaintySection(_Strict):
    method: Literal["llpr", "shallow_ensemble"] = Field(
        "llpr",
        description=(
            "`llpr`: last-layer prediction rigidity, the covariance of the "
            "last-layer features over the training set, calibrated on the "
            "validation set by minimising the Gaussian NLL. `shallow_ensemble`: "
            "LLPR's posterior draws of the last layer, whose variance along each "
            "direction of the training features is fine-tuned (body frozen) with "
            "the Gaussian NLL of the training errors, the epoch of least "
            "validation NLL kept; sigma is the members' spread."
        ),
    )
    ensemble_members: int = Field(
        32,
        ge=2,
        multiple_of=2,
        description=(
            "Members of the `energy_ensemble` output (last-layer weights drawn "
            "from the posterior in +/- pairs, so their mean is the prediction)."
        ),
    )
    epochs: int = Field(
        200,
        ge=1,
        description=(
            "`shallow_ensemble` only: full-batch NLL steps over the training "
            "set's last-layer features (computed once: each step is cheap)."
        ),
    )


Fraction = float
DatasetOrList = Union[DatasetSection, list[DatasetSection]]


class BaseOptions(_Strict):
    architecture: ArchitectureSection = Field(
        description=(
            "Which architecture to train and its hyperparameters. A bare name "
            "(`architecture: soap_bpnn`) is a short form."
        ),
    )
    training_set: DatasetOrList = Field(
        description=(
            "The data to train on: one dataset section or a list of them. A file "
            "name is a short form."
        ),
    )
    validation_set: Union[Fraction, DatasetOrList] = Field(
        0.1,
        description=(
            "A fraction in [0, 1) taken at random from the training set, or "
            "dataset section(s) of its own. Used for the validation metrics, the "
            "plateau scheduler and the choice of the best model."
        ),
    )
    test_set: Union[Fraction, DatasetOrList] = Field(
        0.0,
        description=(
            "Like `validation_set`; the test structures are evaluated with the "
            "exported model at the end of training. `validation_set + test_set` "
            "must be below 1 when both are fractions."
        ),
    )
    seed: Optional[int] = Field(
        None,
        ge=0,
        description=(
            "Seed of the random splits and of training. When unset a random seed "
            "is drawn and written to `options_restart.yaml`."
        ),
    )
    device: str = Field(
        "auto",
        description=(
            "`auto` (CUDA when the architecture supports it and it is available, "
            "else CPU), `cpu`, `cuda` or `cuda:N`."
        ),
    )
    base_precision: Literal[32, 64] = Field(
        32,
        description=(
            "Floating-point precision of training and of the exported model: 32 "
            "or 64 bits."
        ),
    )
    loss: dict[str, TargetLoss] = Field(
        default_factory=dict,
        description=(
            "Loss per training target; see [the loss section](#the-loss-section)."
            " Filled in for every training target."
        ),
    )
    logging: LoggingSection = Field(
        default_factory=LoggingSection,
        description=(
            "What a run shows while it trains and writes besides `train.csv`: "
            "progress bars, plots, TensorBoard and Weights & Biases."
        ),
    )
    uncertainty: Annotated[
        Union[Literal[False], UncertaintySection], TRUE_IS_DEFAULTS
    ] = Field(
        False,
        description=(
            "At the end of training, calibrate an uncertainty on the validation "
            "set and export `model.pt` with `energy_uncertainty` and "
            "`energy_ensemble` (see the uncertainty page): `false`, `true` or a "
            "section."
        ),
    )
