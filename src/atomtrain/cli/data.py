"""``atomtrain data``: pack data for training larger than memory.

Prepare data files: 'pack' converts structure files into one packed store
(.atd) that training, validation and eval read with bounded memory; 'info'
describes a store.
"""

from __future__ import annotations

from atomtrain.api.data import describe_store, pack_data
from atomtrain.cli.common import add_command


def add_parser(commands) -> None:
    parser = add_command(commands, __doc__, None)
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    pack = actions.add_parser(
        "pack",
        help="convert structure files (any format ASE reads) into a .atd store",
        description="Read the structures and targets of the input files (units "
        "converted to eV and Å, as for training) and write them into one packed "
        "store, streaming: memory stays bounded whatever the input size.",
    )
    pack.add_argument(
        "inputs",
        nargs="+",
        help="structure sources: files ASE reads (extended XYZ, ...), ASE "
        "databases (.db) or DeePMD-kit folders",
    )
    pack.add_argument("-o", "--output", required=True, help="store to write (.atd)")
    pack.add_argument(
        "--targets",
        metavar="SPEC",
        help="targets to read, as in a dataset section: a YAML file (a dataset "
        "section, a mapping of targets, or an options file whose training_set is "
        'used) or inline YAML such as "{energy: {unit: kcal/mol}}" (default: '
        "energy in eV with forces and stress when present)",
    )
    pack.add_argument(
        "--length-unit",
        default=None,
        help="unit of positions and cells in the inputs (default: angstrom)",
    )
    pack.set_defaults(run=run_pack)
    info = actions.add_parser("info", help="describe a .atd store")
    info.add_argument("store", help="packed store (.atd)")
    info.set_defaults(run=run_info)


def run_pack(args) -> int:
    pack_data(args.inputs, args.output, args.targets, args.length_unit)
    return 0


def run_info(args) -> int:
    footer = describe_store(args.store)
    print(f"{args.store}: {footer['format']} version {footer['version']}")
    print(f"  written by   {footer['written_by']}")
    print(f"  structures   {footer['n_structures']}")
    print(f"  atoms        {footer['n_atoms']}")
    print(f"  types        {footer['atomic_types']}")
    print(f"  sources      {', '.join(footer['sources'])}")
    for name, target in footer["targets"].items():
        shape = "per atom" if target.per_atom else "per structure"
        print(
            f"  target {name}: {target.quantity or '-'} in {target.unit or '-'}, "
            f"{target.num_subtargets} value(s) {shape}; {target.n_values} labels, "
            f"{target.n_forces} forces, {target.n_stress} stresses"
        )
    return 0
