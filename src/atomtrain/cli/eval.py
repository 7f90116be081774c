"""``atomtrain eval``: predict with an exported model and score the predictions."""

from __future__ import annotations

import io
import json
import logging
import os
import re
from dataclasses import dataclass
from typing import Dict, List

import torch

from atomtrain.data.dataset import read_dataset
from atomtrain.data.info import DatasetInfo, TargetInfo, display_name
from atomtrain.data.structure import Structure
from atomtrain.data.systems import compute_neighbors
from atomtrain.errors import UserError
from atomtrain.options.expand import expand_dataset
from atomtrain.options.load import read_yaml
from atomtrain.options.schema import DatasetSection
from atomtrain.options.validation import validate
from atomtrain.training.evaluate import Batch, predict, references
from atomtrain.training.files import atomic_write_text
from atomtrain.training.losses import normalised_errors
from atomtrain.training.metrics import Metrics
from atomtrain.training.progress import bar


logger = logging.getLogger("atomtrain")


def add_parser(commands) -> None:
    parser = commands.add_parser(
        "eval",
        help="evaluate an exported model on a dataset",
        description="Predict every output of an exported model (model.pt) on the "
        "structures of a dataset file and, when it holds targets, report RMSE and "
        "MAE per target.",
    )
    parser.add_argument("model", help="exported model (.pt)")
    parser.add_argument("options", help="dataset options (YAML) or a structure file")
    parser.add_argument("-b", "--batch-size", type=int, default=16)
    parser.add_argument(
        "-o",
        "--output",
        default="predictions.xyz",
        help="extended XYZ file with the predictions",
    )
    parser.add_argument(
        "-e",
        "--extensions-dir",
        default=None,
        help="folder of compiled extensions the model needs "
        "(default: extensions/ beside the model)",
    )
    parser.add_argument("--device", default="cpu")
    parser.add_argument(
        "--plot",
        action="store_true",
        help="also write parity plots (predicted against reference) beside the "
        "output, as OUTPUT_parity.png (needs matplotlib)",
    )
    parser.add_argument(
        "--progress-bar",
        choices=("auto", "always", "never"),
        default="auto",
        help="progress bar of the batches (auto: only on a terminal)",
    )
    parser.set_defaults(run=run)


def load_exported(path: str, extensions: str | None):
    from metatomic.torch import load_atomistic_model

    if not os.path.exists(path):
        raise UserError(f"model file '{path}' does not exist.")
    if extensions is None:
        beside = os.path.join(os.path.dirname(os.path.abspath(path)), "extensions")
        extensions = beside if os.path.isdir(beside) else None
    try:
        return load_atomistic_model(path, extensions_directory=extensions)
    except Exception as error:
        raise UserError(
            f"'{path}' is not an exported metatomic model "
            f"({str(error).splitlines()[0]})."
            " Export a checkpoint first with 'atomtrain export model.ckpt'."
        ) from None


def model_info(model) -> DatasetInfo:
    """Targets of an exported model: from atomtrain's metadata when present."""
    capabilities = model.capabilities()
    stored = model.metadata().extra.get("atomtrain.dataset_info")
    if stored:
        info = DatasetInfo.from_dict(json.loads(stored))
        for target in info.targets.values():
            if target.is_energy:
                target.gradients = ["positions", "strain"]
        return info
    targets = {
        name: TargetInfo(
            name,
            output.quantity,
            output.unit,
            False,
            1,
            ["positions", "strain"] if name == "energy" else [],
        )
        for name, output in capabilities.outputs.items()
    }
    return DatasetInfo(list(capabilities.atomic_types), targets)


def exported_call(model):
    from metatomic.torch import ModelEvaluationOptions

    def call(systems, outputs):
        options = ModelEvaluationOptions(length_unit="angstrom", outputs=outputs)
        return model(systems, options, check_consistency=False)

    return call


def in_memory_call(model):
    return lambda systems, outputs: model(systems, outputs, None)


@dataclass
class Evaluation:
    """Predictions and references of some structures, batch by batch, and the
    metrics (empty when the structures have no reference values)."""

    predictions: List[Batch]
    references: List[Batch]
    n_atoms: List[torch.Tensor]
    report: Dict[str, float]


def gather_predictions(
    model,
    structures: List[Structure],
    info: DatasetInfo,
    dtype,
    device,
    batch_size: int,
    progress: str = "never",
    label: str = "evaluation",
) -> Evaluation:
    """Predict every target of ``info`` for ``structures`` with an exported or
    in-memory model; shared by ``atomtrain eval``, the end of training and the
    parity plots so that they all score predictions the same way."""
    from metatomic.torch import AtomisticModel

    call = (
        exported_call(model)
        if isinstance(model, AtomisticModel)
        else in_memory_call(model)
    )
    requests = model.requested_neighbor_lists()
    compute_neighbors(structures, requests)
    known = set(info.atomic_types)
    for structure in structures:
        unknown = set(structure.types.tolist()) - known
        if unknown:
            raise UserError(
                f"structure {structure.source} contains atomic types "
                f"{sorted(unknown)} that the model was not trained on (it knows "
                f"{sorted(known)})."
            )
    metrics = Metrics(info.targets)
    result = Evaluation([], [], [], {})
    n_batches = -(-len(structures) // batch_size)
    progress_bar = bar(n_batches, label, progress, unit="batch", leave=False)
    for start in range(0, len(structures), batch_size):
        batch = structures[start : start + batch_size]
        prediction = predict(call, batch, requests, info.targets, dtype, device)
        reference = references(batch, info.targets, dtype, device)
        n_atoms = torch.tensor([len(s) for s in batch], dtype=dtype, device=device)
        metrics.update(normalised_errors(prediction, reference, info.targets, n_atoms))
        result.predictions.append(prediction)
        result.references.append(reference)
        result.n_atoms.append(n_atoms)
        progress_bar.update(1)
    progress_bar.close()
    result.report = metrics.report()
    return result


_METRIC = re.compile(r"^(?P<label>.*) (?P<stat>RMSE|MAE) \((?P<unit>.*)\)$")


def metric_parts(key: str) -> tuple[str, str, str]:
    """``"forces RMSE (meV/Å)"`` -> ``("forces", "RMSE", "meV/Å")``."""
    match = _METRIC.match(key)
    return match.groups() if match else (key, "", "")


def metrics_table(reports: Dict[str, Dict[str, float]]) -> List[str]:
    """Aligned lines of MAE and RMSE per quantity, with a split column when
    ``reports`` (split name -> ``Metrics.report()``) has more than one split."""
    rows: Dict[tuple, Dict[str, str]] = {}
    for split, report in reports.items():
        for key, value in report.items():
            label, stat, unit = metric_parts(key)
            rows.setdefault((label, split, unit), {})[stat] = f"{value:.4g}"
    if not rows:
        return []
    with_split = len(reports) > 1
    header = ["quantity", "split", "MAE", "RMSE", "unit"]
    lines = [
        [label, split, stats.get("MAE", "-"), stats.get("RMSE", "-"), unit]
        for (label, split, unit), stats in rows.items()
    ]
    if not with_split:
        header.pop(1)
        lines = [line[:1] + line[2:] for line in lines]
    widths = [max(len(r[i]) for r in [header, *lines]) for i in range(len(header))]
    numeric = {len(header) - 3, len(header) - 2}  # MAE and RMSE, right-aligned

    def fmt(row: List[str]) -> str:
        cells = [
            cell.rjust(width) if i in numeric else cell.ljust(width)
            for i, (cell, width) in enumerate(zip(row, widths))
        ]
        return "  ".join(cells).rstrip()

    return [fmt(header)] + [fmt(line) for line in lines]


def log_metrics(title: str, reports: Dict[str, Dict[str, float]]) -> None:
    lines = metrics_table(reports)
    if lines:
        logger.info(f"{title}:")
        for line in lines:
            logger.info(f"  {line}")


def evaluate_structures(
    model,
    structures: List[Structure],
    info: DatasetInfo,
    dtype,
    device,
    label: str,
    batch_size: int,
    progress: str = "never",
):
    """Predictions for all structures and, with references, metrics logged."""
    result = gather_predictions(
        model, structures, info, dtype, device, batch_size, progress, label
    )
    log_metrics(f"{label} metrics", {label: result.report})
    return result.predictions, result.report


def write_predictions(
    path: str,
    structures: List[Structure],
    info: DatasetInfo,
    predictions: List[Batch],
    batch_size: int,
) -> None:
    import ase
    import ase.io
    from ase.calculators.singlepoint import SinglePointCalculator

    frames = []
    for b, batch in enumerate(predictions):
        chunk = structures[b * batch_size : (b + 1) * batch_size]
        atom_offset = 0
        for i, structure in enumerate(chunk):
            n = len(structure)
            atoms = ase.Atoms(
                numbers=structure.types.numpy(),
                positions=structure.positions.numpy(),
                cell=structure.cell.numpy(),
                pbc=structure.pbc.numpy(),
            )
            results = {}
            for name, target in info.targets.items():
                values = batch.values[name]
                rows = (
                    values[atom_offset : atom_offset + n]
                    if target.per_atom
                    else values[i : i + 1]
                )
                array = rows.cpu().double().numpy()
                if name == "energy" and not target.per_atom:
                    results["energy"] = float(array[0, 0])
                elif target.per_atom:
                    atoms.arrays[display_name(name)] = array
                else:
                    atoms.info[display_name(name)] = (
                        array.ravel() if array.size > 1 else float(array[0, 0])
                    )
                if name in batch.forces and name == "energy":
                    results["forces"] = (
                        batch.forces[name][atom_offset : atom_offset + n]
                        .cpu()
                        .double()
                        .numpy()
                    )
                if name in batch.stress and name == "energy":
                    results["stress"] = batch.stress[name][i].cpu().double().numpy()
            if results:
                atoms.calc = SinglePointCalculator(atoms, **results)
            frames.append(atoms)
            atom_offset += n
    buffer = io.StringIO()
    ase.io.write(buffer, frames, format="extxyz")
    atomic_write_text(path, buffer.getvalue())


def read_eval_structures(options_path: str, info: DatasetInfo) -> List[Structure]:
    if options_path.endswith((".yaml", ".yml")):
        section = read_yaml(options_path)
    else:
        section = {"systems": options_path}
    section = expand_dataset(section, "eval")
    section = validate(DatasetSection, section, prefix="eval").model_dump()
    structures, _ = read_dataset(section, {})
    return structures


def run(args) -> int:
    if args.batch_size < 1:
        raise UserError(f"--batch-size must be at least 1, got {args.batch_size}.")
    model = load_exported(args.model, args.extensions_dir)
    info = model_info(model)
    structures = read_eval_structures(args.options, info)
    dtype = {"float32": torch.float32, "float64": torch.float64}[
        model.capabilities().dtype
    ]
    device = torch.device(args.device)
    model = model.to(device)
    evaluation = gather_predictions(
        model, structures, info, dtype, device, args.batch_size, args.progress_bar
    )
    log_metrics("evaluation metrics", {"evaluation": evaluation.report})
    write_predictions(
        args.output, structures, info, evaluation.predictions, args.batch_size
    )
    logger.info(
        f"predictions for {len(structures)} structures written to {args.output}"
    )
    stem = os.path.splitext(args.output)[0]
    if evaluation.report:
        metrics_path = stem + "_metrics.json"
        atomic_write_text(metrics_path, json.dumps(evaluation.report, indent=2))
        logger.info(f"metrics written to {metrics_path}")
    if args.plot:
        from atomtrain.training.plots import have_matplotlib, write_parity_plot

        if have_matplotlib():
            write_parity_plot(stem + "_parity.png", evaluation, info, "evaluation")
    return 0
