"""Kill-test: SIGKILL a float64 training N times at random instants, resume it
with ``--restart auto`` each time, and check that the final weights equal those
of an uninterrupted run and that no checkpoint is corrupt.

    python bench/kill_resume.py [--kills 20] [--seed 0]
"""

import argparse
import os
import sys
import tempfile


sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..",
                                "tests"))  # fmt: skip
from kill_harness import (  # noqa: E402
    all_checkpoints_readable,
    final_checkpoint,
    kill_and_resume,
    prepare,
    run_to_end,
    same_weights,
    timed,
)


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=60)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        reference_dir = os.path.join(folder, "reference")
        killed_dir = os.path.join(folder, "killed")
        prepare(reference_dir, args.epochs)
        prepare(killed_dir, args.epochs)
        _, reference_s = timed(run_to_end, reference_dir)
        # kill anywhere from start-up to the end of an uninterrupted run
        window = (1.0, max(2.0, reference_s))
        delays, killed_s = timed(
            kill_and_resume, killed_dir, args.kills, args.seed, window
        )
        checkpoints = all_checkpoints_readable(killed_dir)
        identical = same_weights(
            final_checkpoint(killed_dir), final_checkpoint(reference_dir)
        )
    print(f"kills                      {args.kills}")
    print(f"kill delays (s)            {', '.join(f'{d:.1f}' for d in delays)}")
    print(f"uninterrupted run (s)      {reference_s:.1f}")
    print(f"killed + resumed runs (s)  {killed_s:.1f}")
    print(f"checkpoints read back      {len(checkpoints)} (none corrupt)")
    print(f"final weights identical    {identical}")
    return 0 if identical else 1


if __name__ == "__main__":
    raise SystemExit(main())
