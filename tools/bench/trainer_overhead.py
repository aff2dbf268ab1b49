"""Time the core Trainer against a plain hand-written torch loop: same model, data, optimizer and steps.

    python tools/bench/trainer_overhead.py [--steps 300] [--repeats 3] [--json out.json]

Both loops train the `digits-vit` preset's model on digits with AdamW, a cosine schedule and gradient clipping.
The Trainer runs as a user would run it, minus evaluation: it logs metrics every 10 steps and writes its
resumable checkpoint at the end. Each side runs `--repeats` times, interleaved; the best time of each is compared.
"""

from __future__ import annotations

import argparse
import copy
import json
import platform
import tempfile
import time

import torch
import torch.nn.functional as F

from learngene_core.config import load_config
from learngene_core.experiment import prepare_run
from learngene_core.trainer import Trainer, build_optimizer, build_scheduler, default_param_groups


def plain_loop(model, loader, cfg, steps: int) -> float:
    """The loop a careful user writes by hand (nanoGPT style)."""
    optimizer = build_optimizer(cfg, default_param_groups(model, cfg.weight_decay))
    scheduler = build_scheduler(cfg, optimizer, steps)
    model.train()
    step, start = 0, time.perf_counter()
    while step < steps:
        for inputs, targets in loader:
            loss = F.cross_entropy(model(inputs), targets)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            scheduler.step()
            step += 1
            if step == steps:
                break
    return time.perf_counter() - start


def trainer_loop(model, run, cfg) -> float:
    """The core Trainer on the same data (cfg has max_steps, no progress bar, one final checkpoint)."""
    with tempfile.TemporaryDirectory() as out:
        trainer = Trainer(model, cfg, run.task, run.loaders[0], output_dir=out, seed=run.cfg.seed)
        start = time.perf_counter()
        trainer.fit()
        return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", help="also write the results to this JSON file")
    args = parser.parse_args()

    exp = load_config("digits-vit")
    exp.train.max_steps = args.steps
    exp.train.progress = False
    exp.train.checkpoint_every = args.steps
    run = prepare_run(exp)
    torch.manual_seed(0)
    base_model = run.build_model()

    times: dict[str, list[float]] = {"plain torch loop": [], "learngene Trainer": []}
    for _ in range(args.repeats):
        times["plain torch loop"].append(
            plain_loop(copy.deepcopy(base_model), run.loaders[0], exp.train, args.steps)
        )
        times["learngene Trainer"].append(trainer_loop(copy.deepcopy(base_model), run, exp.train))

    best = {name: min(ts) for name, ts in times.items()}
    ratio = best["learngene Trainer"] / best["plain torch loop"]
    print(
        f"\n{args.steps} steps of digits-vit, best of {args.repeats}, {platform.machine()} "
        f"{torch.get_num_threads()} threads, torch {torch.__version__}"
    )
    print("| loop | seconds | ms/step |\n|---|---|---|")
    for name, t in best.items():
        print(f"| {name} | {t:.2f} | {1000 * t / args.steps:.2f} |")
    print(f"ratio Trainer / plain: {ratio:.3f}x (goal <= 1.05x)")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"steps": args.steps, "times": times, "best": best, "ratio": ratio}, fh, indent=2)


if __name__ == "__main__":
    main()
