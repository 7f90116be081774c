"""``atomtrain data``: pack data for training larger than memory.

Prepare data files: 'pack' converts structure files into one packed store
(.atd) that training, validation and eval read with bounded memory; 'info'
describes a store.
"""

from __future__ import annotations

import logging
import os
import time

import yaml

from atomtrain.cli.common import add_command
from atomtrain.errors import UserError


logger = logging.getLogger("atomtrain")


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
    pack.add_argument("inputs", nargs="+", help="structure files (extended XYZ, ...)")
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


def _spec(text: str | None) -> dict:
    """A dataset-section-like dict from ``--targets`` (a file or inline YAML)."""
    if text is None:
        return {}
    if os.path.exists(text):
        from atomtrain.options.load import read_yaml

        data = read_yaml(text)
        where = f"--targets file '{text}'"
    else:
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as error:
            raise UserError(
                f"--targets '{text}' is neither an existing file nor valid YAML "
                f"({str(error).splitlines()[0]})."
            ) from None
        where = f"--targets '{text}'"
    if isinstance(data, dict) and isinstance(data.get("training_set"), dict):
        data = data["training_set"]  # an options file
    if not isinstance(data, dict):
        raise UserError(
            f"{where} must be a mapping: a dataset section with 'targets', or a "
            "mapping of target names such as {energy: {unit: kcal/mol}}; got "
            f"{data!r}. (Is the file name right?)"
        )
    if "targets" not in data and "systems" not in data:
        data = {"targets": data}  # a mapping of targets
    return data


def run_pack(args) -> int:
    from atomtrain.data.packing import pack

    spec = _spec(args.targets)
    if args.length_unit:
        systems = spec.get("systems") if isinstance(spec.get("systems"), dict) else {}
        spec["systems"] = {**systems, "length_unit": args.length_unit}
    output = args.output
    if output in args.inputs:
        raise UserError(f"the output '{output}' is also an input; choose another name.")
    started = time.perf_counter()
    stored = pack(args.inputs, output, spec)
    logger.info(
        f"wrote {output} ({os.path.getsize(output) / 1e6:.1f} MB) in "
        f"{time.perf_counter() - started:.1f} s"
    )
    for name, target in stored.items():
        logger.info(
            f"  {name}: {target.n_values} labels ({target.unit or 'no unit'}), "
            f"{target.n_forces} with forces, {target.n_stress} with stress"
        )
    return 0


def run_info(args) -> int:
    from atomtrain.data.packed import PackedStore

    store = PackedStore(args.store)
    footer = store.footer
    print(f"{args.store}: {footer['format']} version {footer['version']}")
    print(f"  written by   {footer['written_by']}")
    print(f"  structures   {footer['n_structures']}")
    print(f"  atoms        {footer['n_atoms']}")
    print(f"  types        {footer['atomic_types']}")
    print(f"  sources      {', '.join(footer['sources'])}")
    for name, target in store.targets.items():
        shape = "per atom" if target.per_atom else "per structure"
        print(
            f"  target {name}: {target.quantity or '-'} in {target.unit or '-'}, "
            f"{target.num_subtargets} value(s) {shape}; {target.n_values} labels, "
            f"{target.n_forces} forces, {target.n_stress} stresses"
        )
    store.close()
    return 0
