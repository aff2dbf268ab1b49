"""Choose among NiNo meta-training candidates on validation tasks that the speed-up bench never runs.

    python tools/bench/nino_select.py --candidates runs/nino-a/nino-step01000.pt,runs/nino-a/nino.pt,shipped
        [--tasks cnn-digits-24,...] [--seeds 200,201] [--steps 2000] [--json select.json]
    python tools/bench/nino_select.py --table select.json     # print the ranking of a saved run again

Meta-training loss does not tell which checkpoint helps training most, and choosing on the held-out tasks of
`tools/bench/nino_speedup.py` would tune on its test set. So every candidate (a checkpoint path, or `shipped`
for the one in nino/checkpoints/) trains each validation task (`nino.tasks.VALIDATION_TASKS`: other widths,
depths and kinds than both the bench's tasks and the collect-cpu trajectories) with every jump kept
(guard_factor=None: the checkpoint's own quality, not the guard's), at its own period, from the same init and
batch order as AdamW. The score is the mean over tasks and seeds of log(final validation loss / AdamW's):
below 0, the candidate ends better than AdamW on average. AdamW's runs are stored in the JSON and reused, so
candidates can be added to a saved run one at a time.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import statistics
from pathlib import Path

import torch

from nino.tasks import VALIDATION_TASKS
from nino.train import RunResult, TrainRunConfig, run, steps_ratio


def _summary(res: RunResult) -> dict:
    curve = res.val_losses()
    return {"final_val_loss": curve[-1][1], "curve": curve, "jumps": len(res.nowcasts)}


def evaluate_candidate(candidate: str, tasks: list[str], seeds: list[int], steps: int, eval_every: int,
                       adamw: dict[str, dict]) -> dict:  # fmt: skip
    """Unguarded runs of one candidate on every task x seed, scored against the stored AdamW runs."""
    rows = []
    for task in tasks:
        for seed in seeds:
            key = f"{task}/{seed}"
            base = TrainRunConfig(task=task, seed=seed, steps=steps, eval_every=eval_every, progress=False)
            if key not in adamw:
                adamw[key] = _summary(run(base, "adamw"))
            ckpt = None if candidate == "shipped" else candidate
            res = run(TrainRunConfig(**{**vars(base), "ckpt": ckpt, "guard_factor": None}), "nino")
            ref = adamw[key]
            ratio = steps_ratio(res, _as_result(ref), ref["final_val_loss"])
            final = res.val_losses()[-1][1]
            rows.append({"task": task, "seed": seed, "final_val_loss": final, "ratio_final": ratio,
                         "log_vs_adamw": math.log(final / ref["final_val_loss"])})  # fmt: skip
            print(f"{candidate}: {key} {final / ref['final_val_loss'] - 1:+.1%} vs AdamW", flush=True)
    return {"rows": rows, "score": statistics.mean(r["log_vs_adamw"] for r in rows)}


def _as_result(summary: dict) -> RunResult:
    records = [{"step": step, "split": "val", "loss": loss} for step, loss in summary["curve"]]
    return RunResult("adamw", records, 0.0, 0.0, [])


def print_table(payload: dict) -> None:
    print(f"\n{payload['machine']}; tasks {', '.join(payload['tasks'])}; seeds {payload['seeds']}; "
          f"{payload['steps']} steps; every jump kept")  # fmt: skip
    tasks = payload["tasks"]
    print(
        "| candidate | score (mean log final val / AdamW) | " + " | ".join(tasks) + " | reached AdamW final |"
    )
    print("|---|---|" + "---|" * len(tasks) + "---|")
    ranked = sorted(payload["candidates"].items(), key=lambda kv: kv[1]["score"])
    for name, result in ranked:
        cells = []
        for task in tasks:
            worse = [math.exp(r["log_vs_adamw"]) - 1 for r in result["rows"] if r["task"] == task]
            cells.append(f"{100 * statistics.mean(worse):+.1f}%" if worse else "-")
        reached = sum(r["ratio_final"] is not None for r in result["rows"])
        print(
            f"| {name} | {result['score']:+.3f} | "
            + " | ".join(cells)
            + f" | {reached}/{len(result['rows'])} |"
        )
    print(f"best: {ranked[0][0]}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--candidates", default="shipped", help="checkpoint paths, or `shipped`, comma-separated"
    )
    parser.add_argument("--tasks", default=",".join(VALIDATION_TASKS))
    parser.add_argument("--seeds", default="200,201")
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--eval-every", type=int, default=20)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", default=None, help="results file: AdamW runs and candidates are reused")
    parser.add_argument("--table", default=None, help="only print the ranking of this saved JSON")
    args = parser.parse_args()
    if args.table:
        print_table(json.loads(Path(args.table).read_text()))
        return
    torch.set_num_threads(args.threads)
    tasks, seeds = args.tasks.split(","), [int(s) for s in args.seeds.split(",")]
    unknown = [t for t in tasks if t not in VALIDATION_TASKS]
    if unknown:
        parser.error(f"{unknown[0]} is not a validation task ({', '.join(VALIDATION_TASKS)})")
    path = Path(args.json) if args.json else None
    payload = json.loads(path.read_text()) if path and path.is_file() else {}
    if payload and (payload["tasks"], payload["seeds"], payload["steps"]) != (tasks, seeds, args.steps):
        parser.error(f"{path} holds another setting (tasks, seeds, steps); choose another --json")
    payload = payload or {"tasks": tasks, "seeds": seeds, "steps": args.steps, "adamw": {}, "candidates": {}}
    payload["machine"] = f"{platform.machine()}, {torch.get_num_threads()} torch thread(s)"
    for candidate in args.candidates.split(","):
        if candidate in payload["candidates"]:
            continue
        result = evaluate_candidate(candidate, tasks, seeds, args.steps, args.eval_every, payload["adamw"])
        payload["candidates"][candidate] = result
        if path:
            path.write_text(json.dumps(payload, indent=1))
    print_table(payload)


if __name__ == "__main__":
    main()
