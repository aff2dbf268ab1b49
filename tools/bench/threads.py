"""The console scripts' thread default against torch's own and one thread, on a quiet machine and with one
competing process.

    python tools/bench/threads.py [--steps 150] [--repeats 3] [--json out.json]

Workload: training steps of the `digits-vit` preset's model (the issue's `learngene train --config digits-vit`),
AdamW, batch 64, timed after 10 warm-up steps, each run in a fresh interpreter so the thread settings apply from
the start, exactly as a console script applies them. Settings:

- torch default: what a plain `import torch` picks (one thread per core), OpenMP's default wait policy;
- default (PASSIVE): the console scripts' default, the same threads with OMP_WAIT_POLICY=PASSIVE (idle threads
  sleep instead of spinning);
- --threads 1: one thread.

Conditions: "quiet" (nothing of ours running next to it; on a shared machine other jobs may still run, so the
load average is printed) and "1 competitor" (one extra process spinning a CPU core for the whole run).
The table gives the median time per step over the repeats (interleaved) and the spread (min-max) and each
setting's busy/quiet ratio; below it, the goal check (the default's busy/quiet ratio against the issue's 2x) and
each setting's time against the default's under the same condition.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time

SETTINGS = {
    "torch default": {},
    "default (PASSIVE)": {"OMP_WAIT_POLICY": "PASSIVE"},
    "--threads 1": {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"},
}
DEFAULT = "default (PASSIVE)"
CONDITIONS = ("quiet", "1 competitor")
SPIN = "while True:\n    pass\n"


def worker(steps: int) -> None:
    """Train `steps` timed steps of the digits-vit model; print seconds per step and torch's thread count."""
    import torch
    import torch.nn.functional as F

    from learngene_core.config import ExperimentConfig, load_config
    from learngene_core.experiment import prepare_run

    cfg = load_config("digits-vit", ["train.progress=false"], ExperimentConfig)
    run = prepare_run(cfg)
    model = run.build_model()
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.train.lr)
    batches = iter(())
    timed, start = 0, 0.0
    for step in range(10 + steps):
        if step == 10:
            start = time.perf_counter()
        try:
            inputs, targets = next(batches)
        except StopIteration:
            batches = iter(run.loaders[0])
            inputs, targets = next(batches)
        loss = F.cross_entropy(model(inputs), targets)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        timed += step >= 10
    print(
        json.dumps(
            {"seconds_per_step": (time.perf_counter() - start) / timed, "threads": torch.get_num_threads()}
        )
    )


def measure(setting: str, steps: int) -> dict:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OMP_WAIT_POLICY")
    }
    env.update(SETTINGS[setting])
    cmd = [sys.executable, __file__, "--worker", "--steps", str(steps)]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=150, help="timed training steps per run")
    parser.add_argument("--repeats", type=int, default=3, help="runs per setting and condition (interleaved)")
    parser.add_argument("--json", help="also write the results here")
    parser.add_argument("--skip", action="append", default=[], help="leave out a setting (repeatable)")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.steps)
        return
    for name in args.skip:
        if name not in SETTINGS or name == DEFAULT:
            parser.error(
                f"--skip {name!r}: choose from {sorted(set(SETTINGS) - {DEFAULT})} (the goal check needs the default)"
            )
        SETTINGS.pop(name)

    results = {c: {s: [] for s in SETTINGS} for c in CONDITIONS}
    threads, loads = {}, {c: [] for c in CONDITIONS}
    for condition in CONDITIONS:
        competitor = subprocess.Popen([sys.executable, "-c", SPIN]) if condition != "quiet" else None
        try:
            for _ in range(args.repeats):
                for setting in SETTINGS:
                    loads[condition].append(os.getloadavg()[0])
                    record = measure(setting, args.steps)
                    results[condition][setting].append(record["seconds_per_step"])
                    threads[setting] = record["threads"]
                    print(
                        f"{condition:>12} | {setting:<40} {1000 * record['seconds_per_step']:8.1f} ms/step",
                        flush=True,
                    )
        finally:
            if competitor is not None:
                competitor.kill()
                competitor.wait()

    print(
        f"\nmachine: {platform.machine()}, {os.cpu_count()} cores, {platform.python_implementation()} "
        f"{platform.python_version()}; {args.steps} timed steps x {args.repeats} repeats"
    )
    print(
        f"load average (1 min) during the runs: quiet {statistics.median(loads['quiet']):.1f}, "
        f"1 competitor {statistics.median(loads['1 competitor']):.1f}"
    )
    header = f"| setting | threads | {' | '.join(f'{c}: ms/step (min-max)' for c in CONDITIONS)} | competitor / quiet |"
    print(header)
    print("|" + "---|" * (header.count("|") - 1))
    table = {}
    for setting in SETTINGS:
        cells, medians = [], {}
        for condition in CONDITIONS:
            times = [1000 * t for t in results[condition][setting]]
            medians[condition] = statistics.median(times)
            cells.append(f"{medians[condition]:.1f} ({min(times):.1f}-{max(times):.1f})")
        slowdown = medians["1 competitor"] / medians["quiet"]
        table[setting] = {
            "threads": threads[setting],
            "median_ms": medians,
            "all_ms": {c: [1000 * t for t in results[c][setting]] for c in CONDITIONS},
            "slowdown": slowdown,
        }
        print(f"| {setting} | {threads[setting]} | {' | '.join(cells)} | {slowdown:.2f}x |")
    busy_over_quiet = table[DEFAULT]["slowdown"]
    print(
        f"goal check, {DEFAULT}: with one competing process a step takes {busy_over_quiet:.2f}x its quiet time "
        f"(busy/idle goal: at most 2x: {'met' if busy_over_quiet <= 2 else 'NOT met'})"
    )
    quiet_load = statistics.median(loads["quiet"])
    if quiet_load >= 1:
        print(
            f"caution: 'quiet' ran at load average {quiet_load:.1f} (other jobs on the machine), not on an idle "
            "machine; rerun with nothing else running for the idle figure"
        )
    for condition in CONDITIONS:
        base = table[DEFAULT]["median_ms"][condition]
        ratios = ", ".join(
            f"{s}: {table[s]['median_ms'][condition] / base:.2f}x" for s in SETTINGS if s != DEFAULT
        )
        print(f"{condition}: time per step against the default: {ratios}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(
                {
                    "steps": args.steps,
                    "repeats": args.repeats,
                    "cpu_count": os.cpu_count(),
                    "load_average": loads,
                    "settings": table,
                    "default_busy_over_quiet": busy_over_quiet,
                },
                f,
                indent=2,
            )


if __name__ == "__main__":
    main()
