"""Learngene-initialised descendants against scratch, for TLEG and SWS at three depths, in one run.

    python tools/bench/learngene_vs_scratch.py [--depths 2,4,6] [--epochs 10] [--json out.json]

The setup of tools/learngene_story.py: ancestry on digits 0-4, descendants on digits 5-9 from 20 images per
class, scratch with the same data, budget and architecture. Per method and depth it reports the fraction of
the budget a learngene descendant needs to reach the final validation accuracy of scratch trained for the
whole budget (goal <= 0.5), accuracy after one epoch (learngene vs scratch), final test accuracy, and the
stored learngene's size against the ancestry's.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from learngene_story import run_method, train_ancestry  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--depths", default="2,4,6")
    parser.add_argument("--epochs", type=int, default=10, help="the training budget of every descendant")
    parser.add_argument("--json", help="also write the results to this JSON file")
    args = parser.parse_args()
    depths = [int(d) for d in args.depths.split(",")]

    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        ancestry, _ = train_ancestry(workdir)
        results = [run_method(name, workdir, ancestry, depths, args.epochs) for name in ("tleg", "sws")]

    print(
        f"\n{platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}; budget {args.epochs} epochs"
    )
    print(
        "| method | depth | budget fraction to reach scratch's final | val acc after 1 epoch (learngene / scratch) "
        "| final test acc (learngene / scratch) | learngene size / ancestry |"
    )
    print("|---|---|---|---|---|---|")
    summary = []
    for r in results:
        for depth in depths:
            lg, sc = (
                next(row for row in r.rows if row.depth == depth and row.init == i)
                for i in ("learngene", "scratch")
            )
            fraction = lg.epochs_to_scratch_final / args.epochs if lg.epochs_to_scratch_final else None
            shown = f"{fraction:.2f}" if fraction is not None else "not reached"
            print(
                f"| {r.method} | {depth} | {shown} | {lg.first_epoch_val:.3f} / {sc.first_epoch_val:.3f} "
                f"| {lg.final_test:.3f} / {sc.final_test:.3f} "
                f"| {r.learngene_parameters:,} / {r.ancestry_parameters:,} = {r.learngene_parameters / r.ancestry_parameters:.2f} |"
            )
            summary.append(
                {
                    "method": r.method,
                    "depth": depth,
                    "budget_fraction": fraction,
                    "learngene_first_epoch_val": lg.first_epoch_val,
                    "scratch_first_epoch_val": sc.first_epoch_val,
                    "learngene_final_test": lg.final_test,
                    "scratch_final_test": sc.final_test,
                    "learngene_parameters": r.learngene_parameters,
                    "ancestry_parameters": r.ancestry_parameters,
                }
            )
    if args.json:
        Path(args.json).write_text(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
