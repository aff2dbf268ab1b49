"""AdamW, AdamW + NiNo with the authors' published checkpoint, and AdamW + NiNo with the shipped one, side by side.

    python tools/bench/nino_speedup.py [--tasks cnn-digits-32,...] [--seeds 100,101,102] [--steps 2000]
        [--eval-every 20] [--published nino-no-posw] [--json out.json [--resume]] [--plot curves.png]
    python tools/bench/nino_speedup.py --table a.json,b.json   # one table of saved runs (also --plot; the arms
                                                               # of a task and seed run apart join one row)
    python tools/bench/nino_speedup.py --nowcast-cost           # one nowcast against one period of AdamW steps

Tasks: the held-out tasks of the shipped checkpoint (collect-cpu: 13 small tasks with cnn-digits-16 and
mlp-digits among them, seeds 0-1; here seeds 100+, and 32-64-64 widths) plus the paper's own shapes: the FM-16 conv net
on digits (`cnn-digits-16`) and a 3-layer GPT-2 of width 24 (`gpt2-3-24`) on the core's synthetic text. All
arms share init and batch order per seed. Each NiNo arm runs at its checkpoint's own period (5 x the spacing of
its meta-training states: 1000 for the published one, 200 for the shipped one) with the defaults of
`nino train`: the delayed check (each jump is kept only if, half a snapshot interval later, its loss on a random
held-out 1/12 of the training split is no higher than that of a shadow AdamW run from the pre-jump state on
the same batches; otherwise the shadow replaces it) and the over-fitting stop (the held-out loss is measured
at every snapshot; once it is above its lowest value so far, no more jumps: AdamW trains alone to the end).

Reported per task (mean and min-max over seeds): final loss on the whole training split and on validation; how
much worse than AdamW each arm ends on validation (goal: never more than 5%, every seed); steps ratios on both
curves at AdamW's final and best loss = the first evaluated step at which the NiNo arm reaches that loss / the
first at which AdamW does (`nino.train.steps_ratio`; goal <= 0.6 with the published checkpoint on the paper's
shapes, <= 0.7 with the shipped one), and the training-curve ratio with the shadow's extra base steps counted
as steps; jumps kept / made and the step at which the over-fitting stop ended nowcasting, per seed; the share of training CPU time (one thread: process time, robust to other jobs
on the machine) spent in the nowcasts proper (features, NiNo forward, writing the parameters), the same for one nowcast against
one period of AdamW steps (the share at the checkpoint's own period, however many jumps were made), and in the checks
(held-out evaluations at snapshots and checks, shadow steps, copies). `--arms published-unguarded,shipped-unguarded` adds arms that keep
every jump (guard_factor=None), which shows what the check costs or saves.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
from dataclasses import replace
from pathlib import Path

import torch

from learngene_core.errors import CheckpointError
from nino.published import resolve_checkpoint
from nino.train import RunResult, TrainRunConfig, run, steps_ratio, steps_to_reach

DEFAULT_TASKS = "cnn-digits-16,cnn-digits-32,mlp-digits,gpt2-3-24,cnn-synth-32"
# arm -> (checkpoint: "published" or None for the shipped one, guard_factor); AdamW always runs first
ARMS = {
    "published": ("published", 1.0),
    "shipped": (None, 1.0),
    "published-unguarded": ("published", None),  # every jump kept (the reference's behaviour)
    "shipped-unguarded": (None, None),
}


def run_arms(task: str, seed: int, steps: int, eval_every: int, published: str, arms: list[str]) -> dict:
    """One seed of one task: AdamW, then each NiNo arm."""
    base = TrainRunConfig(
        task=task, seed=seed, steps=steps, eval_every=eval_every, train_curve=True, progress=False
    )
    results = {"adamw": run(base, "adamw")}
    for arm in arms:
        ckpt, guard = ARMS[arm]
        cfg = replace(base, ckpt=published if ckpt == "published" else None, guard_factor=guard)
        results[arm] = run(cfg, "nino")
    return results


def row(task: str, seed: int, results: dict[str, RunResult]) -> dict:
    adamw = results["adamw"]
    out = {"task": task, "seed": seed, "adamw": _arm(adamw)}
    for arm, res in results.items():
        if arm == "adamw":
            continue
        out[arm] = {**_arm(res), "worse_than_adamw": res.val_losses()[-1][1] / adamw.val_losses()[-1][1] - 1}
        for split in ("val", "train"):
            curve = adamw.losses(split)
            final, best = curve[-1][1], min(loss for step, loss in curve if step > 0)
            out[arm][f"ratio_{split}_final"] = steps_ratio(res, adamw, final, split)
            out[arm][f"ratio_{split}_best"] = steps_ratio(res, adamw, best, split)
            hit, base_hit = steps_to_reach(res, final, split), steps_to_reach(adamw, final, split)
            out[arm][f"charged_{split}_final"] = (
                (hit + extra_steps(res, hit)) / base_hit if hit is not None and base_hit is not None else None
            )
    return out


def extra_steps(res: RunResult, step: int) -> int:
    """Base steps the delayed checks' shadows made up to `step` (check_after + 1 per check, fewer if open)."""
    return sum(
        max(0, min(step, r["checked_at"]) - r["step"] + 1) for r in res.nowcasts if r.get("checked_at")
    )


def _arm(res: RunResult) -> dict:
    return {
        "final_val_loss": res.val_losses()[-1][1],
        "best_val_loss": min(loss for step, loss in res.val_losses() if step > 0),
        "final_train_loss": res.final_train_loss,
        "period": res.period,
        "jumps": len(res.nowcasts),
        "jumps_kept": sum(bool(r["accepted"]) for r in res.nowcasts),
        "stopped_at": res.stopped_at,
        "nowcast_share": res.nowcast_share,
        "check_share": res.check_share,
        "train_seconds": res.train_seconds,
        "nowcasts": [{k: v for k, v in r.items() if "seconds" not in k} for r in res.nowcasts],
        "curve": res.val_losses(),
        "train_curve": res.losses("train"),
    }


def _stat(
    values: list[float | None],
    fmt: str = "{:.4f}",
    pct: bool = False,
    none: str = "not reached",
    absent: str = "n.r.",
) -> str:
    got = [v for v in values if v is not None]
    if not got:
        return none
    scale = 100 if pct else 1
    mean = fmt.format(scale * statistics.mean(got))
    spread = f" ({fmt.format(scale * min(got))}-{fmt.format(scale * max(got))})" if len(got) > 1 else ""
    missing = f", {len(values) - len(got)} {absent}" if len(got) < len(values) else ""
    return mean + spread + missing


def print_table(payload: dict) -> None:
    rows = payload["rows"]
    print(f"\n{payload['machine']}; {payload['steps']} steps, evaluation every {payload['eval_every']}; "
          f"seeds {payload['seeds']}; mean (min-max) over seeds")  # fmt: skip
    print("| task | arm | period | final train loss | final val loss | vs AdamW at end (val) | steps ratio, val: "
          "to AdamW final / best | train: to AdamW final / best | train final, shadow steps charged "
          "| jumps kept | stopped at (per seed) | nowcast share | one nowcast / one period | check share |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for task in dict.fromkeys(r["task"] for r in rows):
        mine = [r for r in rows if r["task"] == task]
        for arm in ["adamw", *(a for a in ARMS if a in mine[0])]:
            cells = [r[arm] for r in mine]
            train = _stat([c["final_train_loss"] for c in cells], "{:.1e}")
            val = _stat([c["final_val_loss"] for c in cells])
            if arm == "adamw":
                print(f"| {task} | AdamW | - | {train} | {val} | - | 1 / 1 | 1 / 1 | 1 | - | - | - | - | - |")
                continue
            worse = _stat([c["worse_than_adamw"] for c in cells], "{:+.1f}%", pct=True)
            ratios = [
                " / ".join(_stat([c.get(f"ratio_{split}_{t}") for c in cells], "{:.2f}") for t in ("final", "best"))
                for split in ("val", "train")
            ]  # fmt: skip
            charged = _stat([c.get("charged_train_final") for c in cells], "{:.2f}")
            kept = f"{sum(c['jumps_kept'] for c in cells)}/{sum(c['jumps'] for c in cells)}"
            stops = ", ".join(str(c.get("stopped_at") or "never") for c in cells)
            share = _stat([c["nowcast_share"] for c in cells], "{:.1f}%", pct=True)
            check = _stat([c.get("check_share", 0.0) for c in cells], "{:.1f}%", pct=True)
            per_period = [nowcast_per_period(r, arm) for r in mine]
            per_period = _stat(per_period, "{:.1f}%", pct=True, none="no nowcast", absent="without")
            print(f"| {task} | + NiNo {arm} | {cells[0]['period']} | {train} | {val} | {worse} | {ratios[0]} "
                  f"| {ratios[1]} | {charged} | {kept} | {stops} | {share} | {per_period} | {check} |")  # fmt: skip


def merge_payloads(payloads: list[dict]) -> dict:
    """Saved runs in one payload: rows of other tasks or seeds are appended, and the arms of a task/seed already
    there (e.g. the unguarded arms run apart) join its row. Its AdamW runs must agree: the same init and batches
    give the same run, so a mismatch means the files are not from the same bench."""
    merged = {**payloads[0], "rows": []}
    by_key: dict[tuple[str, int], dict] = {}
    for payload in payloads:
        for new in payload["rows"]:
            key = (new["task"], new["seed"])
            if key not in by_key:
                by_key[key] = {**new}
                merged["rows"].append(by_key[key])
                continue
            old = by_key[key]
            if old["adamw"]["final_val_loss"] != new["adamw"]["final_val_loss"]:
                raise SystemExit(f"{key[0]} seed {key[1]}: the saved AdamW runs differ; not the same bench")
            old.update({arm: cells for arm, cells in new.items() if arm not in old})
    merged["seeds"] = sorted({seed for p in payloads for seed in p["seeds"]})
    return merged


def nowcast_per_period(row: dict, arm: str) -> float | None:
    """CPU time of one nowcast / CPU time of one period of the AdamW run's steps: the nowcast's share at the
    checkpoint's own period, whatever number of jumps the checks and the stop let through (None: no nowcast)."""
    mine, adamw = row[arm], row["adamw"]
    if not mine["jumps"]:
        return None
    per_nowcast = mine["nowcast_share"] * mine["train_seconds"] / mine["jumps"]
    per_step = adamw["train_seconds"] / adamw["curve"][-1][0]  # the last evaluation is at the last step
    return per_nowcast / (per_step * mine["period"])


def nowcast_cost(task: str, ckpt: str | None, seed: int = 100, repeats: int = 20) -> dict:
    """CPU time of one nowcast (`NiNo.predict`) and of one AdamW step of `task`, timed directly (the runs' own
    share depends on how many jumps the checks and the over-fitting stop let through)."""
    import time

    from nino.graph import flatten_params
    from nino.optim import NiNo
    from nino.tasks import build_task

    bundle = build_task(task, seed)
    base = bundle.optimizer()
    nino = NiNo(base, bundle.model, ckpt=ckpt, max_steps=10_000)
    batches = bundle.train.forever()

    def timed(fn) -> float:
        fn()  # warm-up
        started = time.process_time()
        for _ in range(repeats):
            fn()
        return (time.process_time() - started) / repeats

    def adamw_step() -> None:
        base.zero_grad()
        bundle.loss_fn(bundle.model, next(batches)).backward()
        base.step()

    step = timed(adamw_step)
    flat = flatten_params(bundle.model)
    states = [flat + 1e-3 * i for i in range(nino.ctx)]
    predict = timed(lambda: nino.predict(states, 1))
    return {"task": task, "period": nino.period, "nowcast_ms": 1e3 * predict, "step_ms": 1e3 * step,
            "share": predict / (step * nino.period)}  # fmt: skip


COLOURS = ["adamw", "published", "shipped"]


def plot(payload: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = list(dict.fromkeys(r["task"] for r in payload["rows"]))
    fig, axes = plt.subplots(1, len(tasks), figsize=(4.2 * len(tasks), 3.4), squeeze=False)
    for ax, task in zip(axes[0], tasks):
        first = next(r for r in payload["rows"] if r["task"] == task)  # one seed per panel
        for arm in ("adamw", *(a for a in ARMS if a in first)):
            steps, losses = zip(*first[arm]["curve"])
            label = "AdamW" if arm == "adamw" else f"+ NiNo {arm}"
            colour = f"C{COLOURS.index(arm.split('-')[0])}"  # an unguarded arm: its arm's colour, dashed
            dashes = "--" if "unguarded" in arm else "-"
            ax.plot(steps, losses, label=label, color=colour, linestyle=dashes, linewidth=1)
        ax.set_yscale("log")
        ax.set_title(f"{task} (seed {first['seed']})")
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("validation loss")
    axes[0][0].legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tasks", default=DEFAULT_TASKS)
    parser.add_argument("--seeds", default="100,101,102")
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--eval-every", type=int, default=20)
    parser.add_argument("--published", default="nino-no-posw", help="published checkpoint name or path")
    parser.add_argument(
        "--arms", default="published,shipped", help=f"NiNo arms besides AdamW: {', '.join(ARMS)}"
    )
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", default=None, help="write the results here (rewritten after every task)")
    parser.add_argument("--plot", default=None, help="validation curves of the first seed of every task")
    parser.add_argument("--resume", action="store_true", help="keep the task/seed runs already in --json")
    parser.add_argument("--nowcast-cost", action="store_true", help="only time one nowcast per task and arm")
    parser.add_argument("--table", default=None, help="only print the table of these saved JSONs (a,b,...)")
    args = parser.parse_args()
    unknown = [arm for arm in args.arms.split(",") if arm not in ARMS]
    if unknown:
        parser.error(f"unknown arm(s) {', '.join(unknown)}; arms: {', '.join(ARMS)}")
    if not args.table and any(ARMS[arm][0] == "published" for arm in args.arms.split(",")):
        try:  # before any run: offline, a published name is one line saying where to put the file
            args.published = str(resolve_checkpoint(args.published))
        except CheckpointError as exc:
            parser.error(str(exc))
    if args.nowcast_cost:
        torch.set_num_threads(args.threads)
        print(
            "| task | checkpoint | period | one nowcast (ms CPU) | one AdamW step (ms CPU) | share at the period |"
        )
        print("|---|---|---|---|---|---|")
        for task in args.tasks.split(","):
            for arm in args.arms.split(","):
                ckpt = args.published if ARMS[arm][0] == "published" else None
                c = nowcast_cost(task, ckpt)
                print(f"| {task} | {arm} | {c['period']} | {c['nowcast_ms']:.1f} | {c['step_ms']:.2f} "
                      f"| {100 * c['share']:.2f}% |", flush=True)  # fmt: skip
        return
    if args.table:  # saved runs (e.g. one per task, run in parallel): their rows in one table
        merged = merge_payloads([json.loads(Path(path).read_text()) for path in args.table.split(",")])
        print_table(merged)
        if args.plot:
            plot(merged, Path(args.plot))
        return
    torch.set_num_threads(args.threads)
    seeds = [int(s) for s in args.seeds.split(",")]
    payload = {
        "machine": f"{platform.machine()}, {torch.get_num_threads()} torch thread(s), torch {torch.__version__}",
        "steps": args.steps, "eval_every": args.eval_every, "seeds": seeds, "rows": [],
    }  # fmt: skip
    if args.resume and args.json and Path(args.json).is_file():  # an interrupted run: keep what it finished
        payload["rows"] = json.loads(Path(args.json).read_text())["rows"]
    done = {(r["task"], r["seed"]) for r in payload["rows"]}
    for task in args.tasks.split(","):
        for seed in seeds:
            if (task, seed) in done:
                continue
            results = run_arms(task, seed, args.steps, args.eval_every, args.published, args.arms.split(","))
            payload["rows"].append(row(task, seed, results))
            print(f"done: {task} seed {seed}", flush=True)
        if args.json:
            Path(args.json).write_text(json.dumps(payload, indent=1))
    print_table(payload)
    if args.plot:
        plot(payload, Path(args.plot))
        print(f"curves: {args.plot}")


if __name__ == "__main__":
    main()
