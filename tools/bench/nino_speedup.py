"""NiNo-wrapped AdamW against plain AdamW on tasks held out of meta-training, in one run.

    python tools/bench/nino_speedup.py [--tasks cnn-digits-32,cnn-synth-32,cnn-digits-16] [--seeds 100]
        [--steps 1000] [--period P] [--max-k K] [--ckpt PATH] [--plot curves.png] [--json out.json]

Held out of the shipped checkpoint's meta-training (collect-cpu: cnn-digits-16 / cnn-synth-16 / mlp-digits,
seeds 0-3): other widths (32-64-64 convs), other seeds (100+) and, with llama-tiny, another architecture.
Per task and seed it reports the steps NiNo-wrapped AdamW needs to reach plain AdamW's final validation loss,
divided by AdamW's steps (goal <= 0.6; the paper reports about 0.5 at its scale), each run's final validation
loss, and the wall-clock share of the nowcast calls in the NiNo run (goal < 2%). Both optimizers see the same
init and batch order. Validation every --eval-every steps; timing excludes evaluation.

The period defaults to the wrapper's own: ctx x the checkpoint's recorded snapshot spacing (100 for the
shipped checkpoint). `--max-k K` adds, after the spec-default NiNo run (A.7 schedule), a second NiNo run whose
horizons are capped at K (the opt-in `NiNo(max_k=K)`); both are reported, the spec default first.
"""

from __future__ import annotations

import argparse
import json
import platform
from dataclasses import replace
from pathlib import Path

import torch

from nino.train import TrainRunConfig, run, steps_to_reach

DEFAULT_TASKS = "cnn-digits-32,cnn-synth-32,cnn-digits-16"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tasks", default=DEFAULT_TASKS)
    parser.add_argument("--seeds", default="100")
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument(
        "--period",
        type=int,
        default=None,
        help="steps between nowcasts (default: 5 x the checkpoint's spacing)",
    )
    parser.add_argument("--max-k", type=int, default=None, help="also run NiNo with horizons capped at K")
    parser.add_argument("--eval-every", type=int, default=10)
    parser.add_argument("--ckpt", default=None, help="NiNo checkpoint (default: the shipped one)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--plot", default=None, help="write the validation curves of every task to this PNG")
    parser.add_argument("--json", default=None, help="also write the results to this JSON file")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    rows, curves = [], []
    for task in args.tasks.split(","):
        for seed in (int(s) for s in args.seeds.split(",")):
            cfg = TrainRunConfig(task=task, seed=seed, steps=args.steps, eval_every=args.eval_every,
                                 period=args.period, ckpt=args.ckpt, progress=False)  # fmt: skip
            adamw = run(cfg, "adamw")
            target = adamw.val_losses()[-1][1]
            variants = [("spec", cfg)]
            if args.max_k is not None:
                variants.append((f"max_k={args.max_k}", replace(cfg, extra={"max_k": args.max_k})))
            for variant, variant_cfg in variants:
                nino = run(variant_cfg, "nino")
                rows.append(_row(task, seed, variant, adamw, nino, target, args.steps))
                curves.append((f"{task} seed {seed} ({variant})", adamw, nino))

    periods = sorted({r["period"] for r in rows})
    print(f"\n{platform.machine()}, {torch.get_num_threads()} thread(s), torch {torch.__version__}; "
          f"{args.steps} steps, NiNo period {', '.join(map(str, periods))}")  # fmt: skip
    print("| task | seed | NiNo schedule | AdamW final val loss | NiNo final val loss "
          "| NiNo steps to AdamW final / AdamW steps | nowcast share of wall-clock |")  # fmt: skip
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        ratio = f"{r['ratio']:.2f}" if r["ratio"] is not None else "not reached"
        print(f"| {r['task']} | {r['seed']} | {r['schedule']} | {r['adamw_final_val_loss']:.4f} "
              f"| {r['nino_final_val_loss']:.4f} | {ratio} | {100 * r['nowcast_share']:.2f}% |")  # fmt: skip
    for variant in dict.fromkeys(r["schedule"] for r in rows):
        mine = [r for r in rows if r["schedule"] == variant]
        reached = [r["ratio"] for r in mine if r["ratio"] is not None]
        mean = sum(reached) / len(reached) if reached else None
        print(f"{variant}: reached AdamW's final loss in {len(reached)}/{len(mine)} runs"
              + (f"; mean ratio where reached {mean:.2f}" if mean is not None else ""))  # fmt: skip
    if args.plot:
        _plot(curves, Path(args.plot))
        print(f"curves: {args.plot}")
    if args.json:
        Path(args.json).write_text(
            json.dumps({"steps": args.steps, "periods": periods, "max_k": args.max_k, "rows": rows}, indent=2)
        )


def _row(task: str, seed: int, variant: str, adamw, nino, target: float, steps: int) -> dict:
    reached = steps_to_reach(nino, target)
    keys = ("step", "k", "loss_before", "loss_after", "accepted")
    return {
        "task": task,
        "seed": seed,
        "schedule": variant,
        "period": nino.period,
        "adamw_final_val_loss": target,
        "nino_final_val_loss": nino.val_losses()[-1][1],
        "nino_steps_to_adamw_final": reached,
        "ratio": reached / steps if reached else None,
        "nowcast_share": nino.nowcast_share,
        "nowcast_seconds": nino.nowcast_seconds,
        "nino_train_seconds": nino.train_seconds,
        "adamw_train_seconds": adamw.train_seconds,
        "nowcasts": [{k: r.get(k) for k in keys} for r in nino.nowcasts],
    }


def _plot(curves, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(curves), figsize=(4.5 * len(curves), 3.5), squeeze=False)
    for ax, (title, adamw, nino) in zip(axes[0], curves):
        for result, label in ((adamw, "AdamW"), (nino, "AdamW + NiNo")):
            steps, losses = zip(*result.val_losses())
            ax.plot(steps, losses, label=label)
        for record in nino.nowcasts:
            ax.axvline(record.get("step", 0), color="gray", alpha=0.25, linewidth=0.8)
        ax.set_yscale("log")
        ax.set_title(title)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("validation loss")
    axes[0][0].legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)


if __name__ == "__main__":
    main()
