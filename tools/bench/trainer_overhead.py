"""Time the core Trainer against a plain hand-written torch loop: same model, data, optimizer and steps.

    python tools/bench/trainer_overhead.py [--steps 500] [--repeats 5] [--json out.json]

Both loops train the `digits-vit` preset's model on digits with AdamW, a cosine schedule and gradient clipping.
The Trainer runs as a user would run it, minus evaluation: it logs metrics every 10 steps, writes its resumable
checkpoint and final model at the end and plots the curves. Each side runs `--repeats` times, interleaved.
Two figures: the median time of one optimizer step (robust to a noisy machine) and the best total time
(which adds the Trainer's once-per-run costs: checkpoint, final model, plot).
"""

from __future__ import annotations

import argparse
import copy
import json
import platform
import statistics
import tempfile
import time

import torch
import torch.nn.functional as F

from learngene_core.config import load_config
from learngene_core.experiment import prepare_run
from learngene_core.trainer import Trainer, build_optimizer, build_scheduler, default_param_groups


def plain_loop(model, loader, cfg, steps: int) -> tuple[float, list[float]]:
    """The loop a careful user writes by hand (nanoGPT style); returns total time and step end times."""
    optimizer = build_optimizer(cfg, default_param_groups(model, cfg.weight_decay))
    scheduler = build_scheduler(cfg, optimizer, steps)
    model.train()
    start = time.perf_counter()
    ends: list[float] = []
    while len(ends) < steps:
        for inputs, targets in loader:
            loss = F.cross_entropy(model(inputs), targets)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            scheduler.step()
            ends.append(time.perf_counter())
            if len(ends) == steps:
                break
    return time.perf_counter() - start, ends


class StepClock:
    """Trainer callback recording when each optimizer step ends."""

    def __init__(self) -> None:
        self.ends: list[float] = []

    def on_step_end(self, trainer) -> None:
        self.ends.append(time.perf_counter())


def trainer_loop(model, run, cfg) -> tuple[float, list[float]]:
    """The core Trainer on the same data (cfg has max_steps, no progress bar, one final checkpoint)."""
    clock = StepClock()
    with tempfile.TemporaryDirectory() as out:
        trainer = Trainer(
            model, cfg, run.task, run.loaders[0], output_dir=out, seed=run.cfg.seed, callbacks=[clock]
        )
        start = time.perf_counter()
        trainer.fit()
        return time.perf_counter() - start, clock.ends


def median_step_ms(ends: list[float]) -> float:
    return 1000 * statistics.median(b - a for a, b in zip(ends, ends[1:]))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--steps", type=int, default=500)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json", help="also write the results to this JSON file")
    args = parser.parse_args()

    exp = load_config("digits-vit")
    exp.train.max_steps = args.steps
    exp.train.progress = False
    exp.train.checkpoint_every = args.steps
    run = prepare_run(exp)
    base_model = run.build_model()

    runs: dict[str, list[tuple[float, list[float]]]] = {"plain torch loop": [], "learngene Trainer": []}
    for _ in range(args.repeats):
        runs["plain torch loop"].append(
            plain_loop(copy.deepcopy(base_model), run.loaders[0], exp.train, args.steps)
        )
        runs["learngene Trainer"].append(trainer_loop(copy.deepcopy(base_model), run, exp.train))

    results = {
        name: {
            "median_step_ms": statistics.median(median_step_ms(ends) for _, ends in rs),
            "best_total_s": min(total for total, _ in rs),
        }
        for name, rs in runs.items()
    }
    plain, ours = results["plain torch loop"], results["learngene Trainer"]
    step_ratio = ours["median_step_ms"] / plain["median_step_ms"]
    total_ratio = ours["best_total_s"] / plain["best_total_s"]
    print(
        f"\n{args.steps} steps of digits-vit (batch {exp.data.batch_size}), {args.repeats} interleaved repeats, "
        f"{platform.machine()} {torch.get_num_threads()} threads, torch {torch.__version__}"
    )
    print("| loop | median ms/step | best total s |\n|---|---|---|")
    for name, r in results.items():
        print(f"| {name} | {r['median_step_ms']:.2f} | {r['best_total_s']:.2f} |")
    print(f"ratio Trainer / plain: {step_ratio:.3f}x per step, {total_ratio:.3f}x total (goal <= 1.05x)")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(
                {
                    "steps": args.steps,
                    "results": results,
                    "step_ratio": step_ratio,
                    "total_ratio": total_ratio,
                },
                fh,
                indent=2,
            )


if __name__ == "__main__":
    main()
