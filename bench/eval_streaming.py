"""Streaming evaluation: ``atomtrain eval`` on a packed store of N structures.

    python bench/eval_streaming.py [--n 1000000] [--batch-size 256] [--keep DIR]

Packs N structures into a store: ``--distinct`` synthetic ones (3-10 atoms of
H, C, N, O with Morse energies and forces, from ``packed_memory.py``), then
copies of them with every position jittered by 0.01 Å (their references are
the originals', so the metrics are only indicative: memory and time are what
is measured), exports a tiny untrained
SOAP-BPNN, and runs ``atomtrain eval model.pt eval.yaml`` in a child process
with the store's energy and forces as references. Prints the time to pack, the
evaluation's wall time and structures per second, the child's peak resident
memory (it must stay under 2 GB whatever N: batches are read on demand,
metrics are running sums, predictions are appended to the output as they are
made and plots would get a bounded sample) and the size of the predictions
file. With a small N it also prints the time 1,000,000 structures would take
at the measured rate.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time

import yaml


HERE = os.path.dirname(os.path.abspath(__file__))
TINY = {
    "soap": {"max_radial": 2, "max_angular": 1, "cutoff": 3.0},
    "bpnn": {"num_neurons_per_layer": 4, "num_hidden_layers": 1},
}


def export_tiny_model(path: str) -> None:
    import torch

    from atomtrain.architectures.hypers import resolve_hypers
    from atomtrain.architectures.registry import (
        import_architecture,
        import_documentation,
    )
    from atomtrain.data.info import DatasetInfo, TargetInfo
    from atomtrain.export import save_exported

    documentation = import_documentation("soap_bpnn")
    hypers = resolve_hypers(documentation.ModelHypers, TINY, "model", "soap_bpnn")
    energy = TargetInfo("energy", gradients=["positions"])
    info = DatasetInfo([1, 6, 7, 8], {"energy": energy})
    torch.manual_seed(0)
    model = import_architecture("soap_bpnn").__model__(hypers, info)
    save_exported(model.export(), path)


def write_jittered_store(path: str, n: int, distinct: int) -> None:
    """``distinct`` synthetic structures, then jittered copies up to ``n``,
    streamed into a packed store (never a list of all of them)."""
    import dataclasses

    import torch

    sys.path.insert(0, HERE)
    from packed_memory import synthetic_structures

    from atomtrain.data.packed import PackedWriter, StoredTarget

    target = StoredTarget("energy", "eV", False, 1, forces=True, stress=False)
    base = list(synthetic_structures(min(n, distinct), seed=0))
    generator = torch.Generator().manual_seed(0)
    with PackedWriter(path, {"energy": target}, ["synthetic"]) as writer:
        for index in range(n):
            structure = base[index % len(base)]
            if index >= len(base):
                noise = torch.randn(
                    structure.positions.shape, generator=generator, dtype=torch.float64
                )
                structure = dataclasses.replace(
                    structure, positions=structure.positions + 0.01 * noise
                )
            writer.add(structure, 0, index)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--distinct", type=int, default=2000)
    parser.add_argument("--keep", help="work in this folder and keep its files")
    args = parser.parse_args()
    folder = args.keep or tempfile.mkdtemp(prefix="eval_streaming-")
    os.makedirs(folder, exist_ok=True)
    store = os.path.join(folder, "data.atd")
    start = time.perf_counter()
    if not os.path.exists(store):
        write_jittered_store(store, args.n, args.distinct)
    pack_s = time.perf_counter() - start
    export_tiny_model(os.path.join(folder, "model.pt"))
    with open(os.path.join(folder, "eval.yaml"), "w") as file:
        yaml.safe_dump({"systems": "data.atd", "targets": {"energy": {}}}, file)

    command = [sys.executable, "-m", "atomtrain", "eval", "model.pt", "eval.yaml"]
    command += ["-b", str(args.batch_size), "-o", "predictions.xyz"]
    command += ["--progress-bar", "never"]
    start = time.perf_counter()
    done = subprocess.run(command, cwd=folder, capture_output=True, text=True)
    eval_s = time.perf_counter() - start
    if done.returncode != 0:
        print(done.stdout, done.stderr, sep="\n")
        return 1
    peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    predictions = os.path.join(folder, "predictions.xyz")
    size_mb = os.path.getsize(predictions) / 2**20
    rate = args.n / eval_s
    print(f"structures            {args.n:,}")
    store_mb = os.path.getsize(store) / 2**20
    print(f"pack                  {pack_s:.1f} s ({store_mb:.0f} MB store)")
    print(f"eval wall time        {eval_s:.1f} s ({rate:,.0f} structures/s)")
    print(f"eval peak RSS         {peak_mb:.0f} MB (child process)")
    print(f"predictions file      {size_mb:.0f} MB")
    if args.n < 1_000_000:
        print(f"1,000,000 at the rate {1_000_000 / rate / 60:.1f} min (extrapolated)")
    print("\n".join(done.stdout.strip().splitlines()[-6:]))
    if not args.keep:
        shutil.rmtree(folder)
    return 0


if __name__ == "__main__":
    sys.exit(main())
