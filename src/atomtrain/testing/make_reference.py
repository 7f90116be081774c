"""Write the stored checkpoint of an architecture and its reference predictions.

    python -m atomtrain.testing.make_reference NAME [--epochs 2] [--references-only]

writes ``model-v{N}.ckpt`` (N: the model's checkpoint version) into the
architecture's ``tests/checkpoints/`` folder, trained for a few epochs on the
bundled ethanol structures, and ``model-v{N}.json``: its predictions on the
bundled data, which the conformance suite's regression test compares against.
Model hypers are the documentation defaults merged with
``tests/checkpoints/model_hypers.yaml`` when that file exists (keep the model
tiny: the checkpoint is shipped with the package). ``--references-only``
rewrites the ``.json`` files of the checkpoints already stored, without training.
Old checkpoints are kept as fixtures of the upgrade tests: never delete them.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import tempfile

import torch
import yaml

from atomtrain.architectures.hypers import defaults_of, resolve_hypers
from atomtrain.architectures.registry import (
    find_architecture,
    import_architecture,
    import_documentation,
)
from atomtrain.testing.fixtures import (
    CPU,
    checkpoints_folder,
    dataset_info,
    read_bundled,
    reference_path,
    reference_predictions,
)
from atomtrain.training.checkpoints import read_checkpoint


HYPERS_FILE = "model_hypers.yaml"


def write_reference(model_class, path: str) -> str:
    """Write the reference predictions of the checkpoint at ``path``."""
    model = model_class.load_checkpoint(read_checkpoint(path), "export").eval()
    output = reference_path(path)
    with open(output, "w") as file:
        json.dump(reference_predictions(model), file)
        file.write("\n")
    return output


def make_checkpoint(name: str, folder: str, epochs: int, seed: int = 0) -> str:
    """Train a tiny model for ``epochs`` epochs and store its checkpoint."""
    arch = import_architecture(name)
    documentation = import_documentation(name)
    user = {}
    hypers_path = os.path.join(folder, HYPERS_FILE)
    if os.path.isfile(hypers_path):
        with open(hypers_path) as file:
            user = yaml.safe_load(file) or {}
    hypers = resolve_hypers(documentation.ModelHypers, user, "architecture.model", name)
    defaults = defaults_of(documentation.TrainerHypers)
    tiny = {"num_epochs": epochs, "batch_size": 2}
    train_hypers = resolve_hypers(
        documentation.TrainerHypers,
        {k: v for k, v in tiny.items() if k in defaults},
        "architecture.training",
        name,
    )
    dtypes = arch.__model__.__supported_dtypes__
    dtype = torch.float64 if torch.float64 in dtypes else dtypes[0]
    torch.manual_seed(seed)
    model = arch.__model__(hypers, dataset_info())
    ethanol = read_bundled("ethanol")
    trainer = arch.__trainer__(train_hypers)
    with tempfile.TemporaryDirectory() as work:
        trainer.train(model, dtype, [CPU], [ethanol[:8]], [ethanol[8:]], work)
    path = os.path.join(folder, f"model-v{arch.__model__.__checkpoint_version__}.ckpt")
    trainer.save_checkpoint(model, path)
    return path


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m atomtrain.testing.make_reference",
        description=__doc__.split("\n\n")[0],
    )
    parser.add_argument("architecture", help="registry name, e.g. soap_bpnn")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--references-only", action="store_true")
    args = parser.parse_args(argv)
    name = args.architecture
    folder = checkpoints_folder(find_architecture(name).module)
    os.makedirs(folder, exist_ok=True)
    model_class = import_architecture(name).__model__
    if args.references_only:
        paths = sorted(glob.glob(os.path.join(folder, "*.ckpt")))
    else:
        paths = [make_checkpoint(name, folder, args.epochs)]
        print(f"wrote {paths[0]} ({os.path.getsize(paths[0]) / 1024:.0f} kB)")
    for path in paths:
        print(f"wrote {write_reference(model_class, path)}")


if __name__ == "__main__":
    main()
