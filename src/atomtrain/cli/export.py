"""``atomtrain export``: export a checkpoint to a metatomic model (model.pt).

Turn a checkpoint (.ckpt) into a metatomic AtomisticModel file that runs in
ASE, LAMMPS, i-PI and TorchSim.
"""

from __future__ import annotations

from atomtrain.api.exporting import export_checkpoint
from atomtrain.cli.common import add_command, add_output


def add_parser(commands) -> None:
    parser = add_command(commands, __doc__, run)
    parser.add_argument("checkpoint", help="checkpoint written by 'atomtrain train'")
    add_output(parser, "model.pt", "exported model file")
    parser.add_argument(
        "--d3",
        metavar="FUNCTIONAL",
        help="add the DFT-D3(BJ) dispersion of this density functional (e.g. pbe, "
        "r2scan) to the exported energy; needs pip install 'atomtrain[d3]'",
    )


def run(args) -> int:
    export_checkpoint(args.checkpoint, args.output, d3=args.d3)
    return 0
