"""``atomtrain calibrate``: an exported model with calibrated uncertainties."""

from __future__ import annotations

import os

from atomtrain.uncertainty.export import DEFAULT_EPOCHS, DEFAULT_MEMBERS


def add_parser(commands) -> None:
    parser = commands.add_parser(
        "calibrate",
        help="calibrate uncertainties (LLPR) and export the model with them",
        description="Accumulate the last-layer covariance of a checkpoint over "
        "its training set, fit the uncertainty's scale on the calibration "
        "dataset (Gaussian NLL) and write an exported model that also offers "
        "energy_uncertainty and energy_ensemble.",
    )
    parser.add_argument("checkpoint", help="checkpoint (.ckpt)")
    parser.add_argument(
        "calibration", help="dataset options (YAML, as for eval) or a structure file"
    )
    parser.add_argument("-o", "--output", default="calibrated.pt")
    parser.add_argument(
        "--train",
        default=None,
        help="structures of the covariance (dataset YAML, structure file, or "
        "the training options, whose training split is used); default: the "
        "training set of options_restart.yaml beside the checkpoint",
    )
    parser.add_argument(
        "--members",
        type=int,
        default=DEFAULT_MEMBERS,
        help=f"members of the energy_ensemble output (even; {DEFAULT_MEMBERS})",
    )
    parser.add_argument(
        "--method",
        choices=["llpr", "shallow_ensemble"],
        default="llpr",
        help="llpr (default), or shallow_ensemble: LLPR's posterior draws "
        "fine-tuned with the Gaussian NLL on the training set",
    )
    parser.add_argument(
        "--epochs",
        type=int,
        default=DEFAULT_EPOCHS,
        help=f"shallow_ensemble: NLL fine-tuning steps ({DEFAULT_EPOCHS})",
    )
    parser.add_argument("-b", "--batch-size", type=int, default=16)
    parser.add_argument("--device", default="cpu")
    parser.set_defaults(run=run)


def run(args) -> int:
    from atomtrain.api.models import load_checkpoint
    from atomtrain.errors import UserError
    from atomtrain.uncertainty.checkpoint import calibrate_checkpoint

    if not os.path.exists(args.checkpoint):
        raise UserError(f"checkpoint '{args.checkpoint}' does not exist.")
    model = load_checkpoint(args.checkpoint, "export")[1].eval()
    calibrate_checkpoint(
        model,
        args.checkpoint,
        args.calibration,
        args.output,
        args.train,
        args.members,
        args.batch_size,
        args.device,
        args.method,
        args.epochs,
    )
    return 0
