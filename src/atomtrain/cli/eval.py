"""``atomtrain eval``: evaluate a model on a dataset.

Predict the targets of an exported model (model.pt, from atomtrain or any
metatomic tool) on the structures of a dataset and, when it holds references,
report RMSE and MAE per target. Predictions are written as they are made.
"""

from __future__ import annotations

from atomtrain.api.evaluating import evaluate
from atomtrain.cli.common import add_command, add_output, add_progress_bar


def add_parser(commands) -> None:
    parser = add_command(commands, __doc__, run)
    parser.add_argument("model", help="exported model (.pt)")
    parser.add_argument(
        "options", help="dataset options (YAML), or a structure file (.xyz, .atd...)"
    )
    parser.add_argument("-b", "--batch-size", type=int, default=16)
    add_output(parser, "predictions.xyz", "extended XYZ file of the predictions")
    parser.add_argument(
        "-e",
        "--extensions",
        "--extensions-dir",
        dest="extensions",
        default=None,
        metavar="DIR",
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
        "--variant",
        default=None,
        metavar="NAME",
        help="evaluate the model's targets of this variant (energy/NAME...) as "
        "the plain targets (energy, with forces and stress) of the data",
    )
    add_progress_bar(parser, "progress bar of the batches")


def run(args) -> int:
    evaluate(
        args.model,
        args.options,
        args.batch_size,
        output=args.output,
        extensions=args.extensions,
        device=args.device,
        plot=args.plot,
        progress=args.progress_bar,
        variant=args.variant,
    )
    return 0
