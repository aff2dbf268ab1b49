"""Time the core Trainer against a plain hand-written torch loop: same model, data, optimizer, steps, checkpoints.

    python tools/bench/trainer_overhead.py [--steps 500] [--repeats 5] [--threads 1] [--json out.json]

Both loops train the `digits-vit` preset's model on digits with AdamW, a cosine schedule and gradient clipping,
and both save a resumable checkpoint at the end of every epoch, as the presets do (the Trainer its
`checkpoints/last/`: weights, metadata and optimizer/scheduler/RNG state, written atomically; the plain loop a
`torch.save` of the model, optimizer and scheduler state to a temporary file renamed over the last one). The
Trainer runs as a user would run it, minus evaluation: it also logs metrics every 10 steps, saves its final model
and plots the curves.

Repeats are paired: each repeat runs the two loops back to back (alternating which goes first), in one process
with the same thread count, and the ratio is taken within the pair, so machine load that changes between
repeats mostly cancels. Reported: the median time of one optimizer step (robust to a noisy machine) and the total
time (which adds checkpoints and the once-per-run costs), each as the median and range of the paired ratios, in
CPU time of the process (what the loop computes; on a shared, oversubscribed machine wall time mostly measures
how long the process waited for a core) and in wall time.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from learngene_core.config import load_config
from learngene_core.experiment import prepare_run
from learngene_core.trainer import Trainer, build_optimizer, build_scheduler, default_param_groups

Clock = tuple[float, float]  # (wall, CPU) seconds


def now() -> Clock:
    return time.perf_counter(), time.process_time()


def plain_loop(model, loader, cfg, steps: int) -> tuple[Clock, list[Clock]]:
    """The loop a careful user writes by hand (nanoGPT style), checkpointing every epoch; returns the total
    (wall, CPU) time and the clocks at each step's end."""
    optimizer = build_optimizer(cfg, default_param_groups(model, cfg.weight_decay))
    scheduler = build_scheduler(cfg, optimizer, steps)
    model.train()
    ends: list[Clock] = []
    with tempfile.TemporaryDirectory() as out:
        last = Path(out) / "last.pt"
        start = now()
        while len(ends) < steps:
            for inputs, targets in loader:
                loss = F.cross_entropy(model(inputs), targets)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
                scheduler.step()
                ends.append(now())
                if len(ends) == steps:
                    break
            state = {
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "step": len(ends),
            }
            torch.save(state, last.with_suffix(".tmp"))
            os.replace(last.with_suffix(".tmp"), last)
        return elapsed(start), ends


class StepClock:
    """Trainer callback recording when each optimizer step ends."""

    def __init__(self) -> None:
        self.ends: list[Clock] = []

    def on_step_end(self, trainer) -> None:
        self.ends.append(now())


def elapsed(start: Clock) -> Clock:
    end = now()
    return end[0] - start[0], end[1] - start[1]


def trainer_loop(model, run, cfg) -> tuple[Clock, list[Clock]]:
    """The core Trainer on the same data (cfg: max_steps, no progress bar, the preset's per-epoch checkpoints)."""
    clock = StepClock()
    with tempfile.TemporaryDirectory() as out:
        trainer = Trainer(
            model, cfg, run.task, run.loaders[0], output_dir=out, seed=run.cfg.seed, callbacks=[clock]
        )
        start = now()
        trainer.fit()
        return elapsed(start), clock.ends


def median_step_ms(ends: list[Clock], which: int) -> float:
    return 1000 * statistics.median(b[which] - a[which] for a, b in zip(ends, ends[1:]))


def summary(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--steps", type=int, default=500)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1, help="torch threads for both loops (default 1)")
    parser.add_argument("--json", help="also write the results to this JSON file")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    exp = load_config("digits-vit")
    exp.train.max_steps = args.steps
    exp.train.progress = False
    run = prepare_run(exp)
    base_model = run.build_model()

    arms = {
        "plain": lambda: plain_loop(copy.deepcopy(base_model), run.loaders[0], exp.train, args.steps),
        "trainer": lambda: trainer_loop(copy.deepcopy(base_model), run, exp.train),
    }
    pairs = []
    for repeat in range(args.repeats):
        order = ["plain", "trainer"] if repeat % 2 == 0 else ["trainer", "plain"]
        timed = {name: arms[name]() for name in order}
        p, t = timed["plain"], timed["trainer"]
        pairs.append(
            {
                f"{arm}_{kind}_{unit}": value
                for arm, (total, ends) in (("plain", p), ("trainer", t))
                for kind, which in (("wall", 0), ("cpu", 1))
                for unit, value in (("step_ms", median_step_ms(ends, which)), ("total_s", total[which]))
            }
        )
    ratios = {
        f"{kind}_{unit}": summary([r[f"trainer_{kind}_{unit}"] / r[f"plain_{kind}_{unit}"] for r in pairs])
        for kind in ("cpu", "wall")
        for unit in ("step_ms", "total_s")
    }
    results = {
        name: {key: statistics.median(r[f"{arm}_{key}"] for r in pairs) for key in
               ("cpu_step_ms", "cpu_total_s", "wall_step_ms", "wall_total_s")}
        for name, arm in (("plain torch loop", "plain"), ("learngene Trainer", "trainer"))
    }  # fmt: skip
    epochs = -(-args.steps // len(run.loaders[0]))
    print(
        f"\n{args.steps} steps ({epochs} epochs, a checkpoint each) of digits-vit (batch {exp.data.batch_size}), "
        f"{args.repeats} paired repeats, {platform.machine()} {os.cpu_count()} cores, {args.threads} torch "
        f"thread(s), load average {os.getloadavg()[0]:.1f}, torch {torch.__version__}"
    )
    print("| loop | CPU ms/step | CPU total s | wall ms/step | wall total s |\n|---|---:|---:|---:|---:|")
    for name, r in results.items():
        print(
            f"| {name} | {r['cpu_step_ms']:.2f} | {r['cpu_total_s']:.2f} | {r['wall_step_ms']:.2f} | "
            f"{r['wall_total_s']:.2f} |"
        )
    for kind in ("cpu", "wall"):
        s, t = ratios[f"{kind}_step_ms"], ratios[f"{kind}_total_s"]
        print(
            f"ratio Trainer / plain ({kind.upper()} time, paired): {s['median']:.3f}x per step (range "
            f"{s['min']:.3f}-{s['max']:.3f}), {t['median']:.3f}x total (range {t['min']:.3f}-{t['max']:.3f})"
        )
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(
                {
                    "steps": args.steps,
                    "threads": args.threads,
                    "pairs": pairs,
                    "results": results,
                    "ratios": ratios,
                },
                fh,
                indent=2,
            )


if __name__ == "__main__":
    main()
