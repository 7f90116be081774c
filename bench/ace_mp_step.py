"""Time of one ACE-MP force-training step, per model configuration.

    python bench/ace_mp_step.py [--steps 40] [--configs medium l2 l2-f32 f32]
        [--data PATH] [--output FILE]

What an epoch of the accuracy benchmark is made of: batches of 5 rMD17 ethanol
molecules (the first 100 of ``<repo>/../shared/data/rmd17-ethanol/train.xyz``,
or ``--data``), energies and forces predicted with the training pass (forces by
automatic differentiation, kept in the graph), a squared-error loss of both,
its backward to the weights (the double backward of force training) and an
Adam step, on one thread. After 3 warm-up steps, prints the median and the
fastest of ``--steps`` steps for each configuration of ``CONFIGS`` (the
``medium`` preset, float64 or float32, with l = 1 or l = 2 features between
layers, and ``features_in_float32``; ``benchmark``: the model options of
``bench/accuracy/rmd17-ethanol.yaml``), and writes them with the environment
to ``bench/results/ace_mp_step.json``. Timings are only comparable on an
otherwise idle machine: the load average is recorded.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

from soap_bpnn import RESULTS, environment, loadavg, write_results


HERE = os.path.dirname(os.path.abspath(__file__))
ETHANOL = os.path.join(HERE, "..", "..", "shared", "data", "rmd17-ethanol", "train.xyz")

# name: (base precision, model hypers beside the medium preset's defaults)
CONFIGS = {
    "medium": (64, {}),
    "f32": (32, {}),
    "l2": (64, {"hidden_l_max": 2}),
    "l2-f32": (32, {"hidden_l_max": 2}),
    "l2-features-f32": (64, {"hidden_l_max": 2, "features_in_float32": True}),
}
BENCHMARK_OPTIONS = os.path.join(HERE, "accuracy", "rmd17-ethanol.yaml")


def benchmark_config() -> tuple:
    """The precision and model hypers of the accuracy benchmark's options."""
    import yaml

    with open(BENCHMARK_OPTIONS) as file:
        options = yaml.safe_load(file)
    return options.get("base_precision", 32), options["architecture"]["model"]


def time_config(structures, precision: int, overrides: dict, steps: int) -> dict:
    """Median and fastest training step (ms) of one configuration."""
    import torch

    from atomtrain.architectures.hypers import defaults_of
    from atomtrain.architectures.registry import (
        import_architecture,
        import_documentation,
    )
    from atomtrain.data.info import DatasetInfo, TargetInfo
    from atomtrain.data.systems import compute_neighbors
    from atomtrain.training.evaluate import predict, references

    dtype = torch.float64 if precision == 64 else torch.float32
    types = sorted({int(t) for s in structures for t in s.types})
    info = DatasetInfo(types, {"energy": TargetInfo("energy", gradients=["positions"])})
    hypers = defaults_of(import_documentation("ace_mp").ModelHypers)
    hypers.update(overrides)
    torch.manual_seed(0)
    model = import_architecture("ace_mp").__model__(hypers, info).to(dtype)
    requests = model.requested_neighbor_lists()
    compute_neighbors(structures, requests)
    optimizer = torch.optim.Adam(model.parameters())
    parameters = list(model.parameters())
    cpu = torch.device("cpu")

    def step(batch) -> float:
        start = time.perf_counter()
        predicted = predict(
            model, batch, requests, info.targets, dtype, cpu, training=True
        )
        reference = references(batch, info.targets, dtype, cpu)
        energy = predicted.values["energy"] - reference.values["energy"]
        forces = predicted.forces["energy"] - reference.forces["energy"]
        loss = (energy**2).mean() + (forces**2).mean()
        optimizer.zero_grad()
        loss.backward(inputs=parameters)
        optimizer.step()
        return time.perf_counter() - start

    batches = [structures[i : i + 5] for i in range(0, len(structures), 5)]
    for batch in batches[:3]:
        step(batch)
    times = [step(batches[i % len(batches)]) for i in range(steps)]
    return {
        "parameters": sum(p.numel() for p in parameters),
        "median_step_ms": round(1000 * statistics.median(times), 1),
        "min_step_ms": round(1000 * min(times), 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--configs", nargs="+", default=[*CONFIGS, "benchmark"])
    parser.add_argument("--data", default=ETHANOL)
    parser.add_argument("--output", default=os.path.join(RESULTS, "ace_mp_step.json"))
    args = parser.parse_args()
    configs = {**CONFIGS, "benchmark": benchmark_config()}
    unknown = sorted(set(args.configs) - set(configs))
    if unknown:
        sys.exit(f"unknown configurations {unknown}; choose from {sorted(configs)}")
    import torch

    from atomtrain.cli import keep_freed_memory
    from atomtrain.testing.fixtures import read_labelled

    torch.set_num_threads(1)
    keep_freed_memory()  # as the CLI does
    structures = read_labelled(args.data)[:100]
    before = loadavg()
    rows = {}
    header = ("configuration", "parameters", "median ms", "fastest ms")
    print("{:<22} {:>10} {:>10} {:>11}".format(*header))
    for name in args.configs:
        precision, overrides = configs[name]
        row = time_config(structures, precision, overrides, args.steps)
        row.update(precision=precision, hypers=overrides)
        rows[name] = row
        print(
            f"{name:<22} {row['parameters']:>10,} {row['median_step_ms']:>10} "
            f"{row['min_step_ms']:>11}",
            flush=True,
        )
    write_results(
        {"steps": rows, "environment": environment(before, steps=args.steps)},
        args.output,
    )


if __name__ == "__main__":
    main()
