"""Does ``torch.compile`` help atomtrain's training? The measurement behind
"not offered".

    python bench/torch_compile.py [--dataset water] [--steps 60] [--repeats 2]

1. Force training differentiates a gradient (forces) once more with respect to
   the weights. The script checks whether ``torch.compile`` supports that on a
   small MLP (torch 2.13: aot_autograd raises "does not currently support
   double backward"), so any compiled module that the forces flow through is
   out.
2. Energy-only training needs no double backward. The script times SOAP-BPNN
   training steps (default hypers, batch 8, float32, energy loss only, Adam) in
   eager mode and with the per-element networks and the heads compiled
   (``dynamic=True``; the descriptor's autograd Function and metatomic's
   TorchScript ``System`` objects are not traceable by dynamo), alternating
   ``--repeats`` times, each in a fresh process, and reports the compilation
   time and the median step.

Prints a table and writes ``bench/results/torch_compile.json`` (git-ignored).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

from soap_bpnn import DATASETS, RESULTS, environment, loadavg, write_results


def double_backward_supported() -> str:
    """'yes', or the error torch.compile gives for a gradient of a gradient."""
    import torch

    mlp = torch.nn.Sequential(
        torch.nn.Linear(16, 32), torch.nn.SiLU(), torch.nn.Linear(32, 1)
    )
    compiled = torch.compile(mlp)
    x = torch.randn(64, 16, requires_grad=True)
    (gradient,) = torch.autograd.grad(compiled(x).sum(), x, create_graph=True)
    try:
        (gradient**2).sum().backward()
    except RuntimeError as error:
        return str(error).splitlines()[0]
    return "yes"


def time_steps(dataset: str, steps: int, compiled: bool) -> dict:
    """Median energy-only training step of SOAP-BPNN (in this process)."""
    import torch

    from atomtrain.architectures.hypers import defaults_of
    from atomtrain.architectures.registry import (
        import_architecture,
        import_documentation,
    )
    from atomtrain.cli import keep_freed_memory
    from atomtrain.data.info import DatasetInfo, TargetInfo
    from atomtrain.data.systems import compute_neighbors
    from atomtrain.testing.fixtures import read_labelled
    from atomtrain.training.evaluate import predict, references

    keep_freed_memory()  # as the CLI does
    spec = DATASETS[dataset]
    structures = read_labelled(spec["path"])[:80]
    types = sorted({int(t) for s in structures for t in s.types})
    info = DatasetInfo(types, {"energy": TargetInfo("energy", gradients=[])})
    hypers = defaults_of(import_documentation("soap_bpnn").ModelHypers)
    torch.manual_seed(0)
    model = import_architecture("soap_bpnn").__model__(hypers, info)
    if compiled:
        model.networks = torch.compile(model.networks, dynamic=True)
        for name in list(model.heads):
            model.heads[name] = torch.compile(model.heads[name], dynamic=True)
    requests = model.requested_neighbor_lists()
    compute_neighbors(structures, requests)
    optimizer = torch.optim.Adam(model.parameters())
    cpu = torch.device("cpu")

    def step(batch) -> float:
        start = time.perf_counter()
        predicted = predict(
            model, batch, requests, info.targets, torch.float32, cpu, training=True
        )
        reference = references(batch, info.targets, torch.float32, cpu)
        loss = ((predicted.values["energy"] - reference.values["energy"]) ** 2).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        return time.perf_counter() - start

    batches = [structures[i : i + 8] for i in range(0, len(structures), 8)]
    start = time.perf_counter()
    for batch in batches[:3]:  # compilation happens here
        step(batch)
    warmup = time.perf_counter() - start
    times = [step(batches[i % len(batches)]) for i in range(steps)]
    return {
        "compiled": compiled,
        "warmup_s": warmup,
        "median_step_ms": 1000 * statistics.median(times),
        "min_step_ms": 1000 * min(times),
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", choices=sorted(DATASETS), default="water")
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--output", default=os.path.join(RESULTS, "torch_compile.json"))
    parser.add_argument(
        "--child", choices=["eager", "compiled"], help=argparse.SUPPRESS
    )
    args = parser.parse_args()
    if args.child:
        result = time_steps(args.dataset, args.steps, args.child == "compiled")
        print("RESULT", json.dumps(result))
        return

    load_before = loadavg()
    support = double_backward_supported()
    print(f"double backward through a compiled module: {support}")
    runs = []
    for _ in range(args.repeats):
        for mode in ("eager", "compiled"):
            command = [sys.executable, __file__, "--child", mode]
            command += ["--dataset", args.dataset, "--steps", str(args.steps)]
            process = subprocess.run(command, capture_output=True, text=True)
            if process.returncode != 0:
                sys.exit(f"bench: {mode} run failed:\n{process.stderr[-3000:]}")
            (line,) = [x for x in process.stdout.splitlines() if x.startswith("RESULT")]
            runs.append(json.loads(line.split(" ", 1)[1]))

    print(f"\nSOAP-BPNN, {args.dataset}, energy-only, batch 8, {args.steps} steps")
    print(f"{'mode':>10} {'warm-up (s)':>12} {'median step (ms)':>17} {'min (ms)':>9}")
    for run in runs:
        mode = "compiled" if run["compiled"] else "eager"
        print(
            f"{mode:>10} {run['warmup_s']:12.1f} {run['median_step_ms']:17.1f} "
            f"{run['min_step_ms']:9.1f}"
        )
    write_results(
        {
            "environment": environment(load_before),
            "double_backward": support,
            "dataset": args.dataset,
            "runs": runs,
        },
        args.output,
    )


if __name__ == "__main__":
    main()
