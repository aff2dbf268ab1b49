"""Learngene Pool descendants against scratch ViTs of the same sizes on digits, with the distillation cost charged.

    python tools/bench/pool_sizes.py [--seeds 0,1,2] [--json out.json] [--png out.png] [--smoke]

Per seed (the seed also draws the digits split, so everything of a seed shares one split and no test image is
ever trained on): an ancestry ViT (width 64, 6 blocks, all ten digits, 16x16) is trained; a narrow (width 32) and
a wide (width 64) auxiliary model of 3 blocks are distilled from it (`learngene-pool distill`, the paper's loss);
the pool (6 instances, 9 descendants) is built with the `ours` stitch init and trained one config per step.
Every descendant is then fine-tuned for a short budget. Baselines: the same architecture from scratch (an exact
size match), trained (a) for the same budget and (b) for the pool descendant's total cost converted into epochs of
that model. Each arm picks its learning rate per descendant from a small sweep on seed 0's validation accuracy.
With --workdir, finished runs found there are reused (an interrupted bench continues). Costs are training FLOPs (torch's flop counter on one image; forward + backward
= 3 forwards; distillation adds a teacher forward per image); the pool's "total cost" of a descendant is its
fine-tune plus its share (1/9) of distilling both aux models and training the pool. The ancestry is given (as
DeiT-B is in the paper) and not charged; its own test accuracy is printed as the long-budget reference.
Storage: the pool (instances + stitch layers) against SN-Net's three separately trained anchors (widths 32/48/64
at the ancestry's depth 6).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import platform
import statistics
import sys
import tempfile
from pathlib import Path

import timm
import torch

from learngene_core import experiment
from learngene_core.config import ExperimentConfig, load_config
from learngene_core.learngene import load_ancestry
from learngene_core.metrics import read_metrics
from learngene_core.models import count_parameters
from learngene_pool.aux import distill_aux
from learngene_pool.build import build_pool, load_pool
from learngene_pool.config import AuxConfig, BuildConfig
from learngene_pool.finetune import train_descendant
from learngene_pool.listing import describe, forward_flops

PACKAGE = "learngene_pool.configs"
SHAPE = (1, 16, 16)
# all ten digits; validate and checkpoint once, at the end of each (short) run
COMMON = [
    "data.classes=null",
    "train.progress=false",
    "train.eval_every=100000",
    "train.checkpoint_every=100000",
]
BUDGET = {"ancestry": 15, "distill": 10, "build": 6, "finetune": 3}  # epochs
LRS = {"pool": (5e-4, 1.5e-3, 3e-3), "scratch": (1e-3, 3e-3, 6e-3, 1.2e-2)}
ARMS = {
    "pool": "pool descendant, fine-tuned",
    "scratch": "scratch, same budget",
    "scratch_equal_cost": "scratch, equal total cost",
}


def quiet(fn, *args, **kwargs):
    """Run `fn` with its stdout (per-run summaries) swallowed."""
    with contextlib.redirect_stdout(io.StringIO()):
        return fn(*args, **kwargs)


def finished(run_dir: Path) -> dict | None:
    """The test metrics of a finished run in `run_dir` (a rerun with --workdir reuses it), else None."""
    if not (run_dir / "final" / "metadata.json").is_file():
        return None
    return [r for r in read_metrics(run_dir / "metrics.jsonl") if r["split"] == "test"][-1]


def train_ancestry(out: Path, seed: int) -> float:
    cfg = load_config("digits-ancestry", [*COMMON, f"train.epochs={BUDGET['ancestry']}", f"seed={seed}"])
    return (finished(out) or quiet(experiment.train, cfg, out))["accuracy"]


def make_pool(workdir: Path, ancestry: Path, seed: int) -> tuple[Path, float, int]:
    """Distil both aux models and build the pool; returns (pool dir, training FLOPs, training images)."""
    flops, aux_dirs = 0.0, []
    for preset in ("tiny-aux-narrow", "tiny-aux-wide"):
        overrides = [*COMMON, f"ancestry.run={ancestry}", f"train.epochs={BUDGET['distill']}", f"seed={seed}"]
        cfg = load_config(preset, overrides, AuxConfig, PACKAGE)
        if (workdir / preset / "aux.json").is_file():
            manifest = json.loads((workdir / preset / "aux.json").read_text())
        else:
            manifest, _ = quiet(distill_aux, cfg, workdir / preset)
        aux_dirs.append(workdir / preset)
        samples = len(experiment.prepare_run(cfg).splits.train)
        teacher, _ = load_ancestry(cfg.ancestry, 10, SHAPE)
        student = timm.create_model("vit_tiny_patch16_224", **manifest["timm_kwargs"])
        per_image = 3 * forward_flops(student, SHAPE) + forward_flops(teacher, SHAPE)
        flops += BUDGET["distill"] * samples * per_image
    overrides = [
        *COMMON,
        f"aux=[{aux_dirs[0]},{aux_dirs[1]}]",
        f"train.epochs={BUDGET['build']}",
        f"seed={seed}",
    ]
    pool_dir = workdir / "pool"
    if not (pool_dir / "pool.json").is_file():
        quiet(build_pool, load_config("tiny-build", overrides, BuildConfig, PACKAGE), pool_dir)
    pool, _ = load_pool(pool_dir)
    mean_config = statistics.mean(forward_flops(pool.descendant(c.id), SHAPE) for c in pool.configs)
    return pool_dir, flops + BUDGET["build"] * samples * 3 * mean_config, samples


def finetune(pool_dir: Path, cfg_id: int, init: str, lr: float, epochs: int, seed: int, out: Path) -> dict:
    """Train one descendant for `epochs`; returns final val and test accuracy."""
    overrides = [*COMMON, f"train.lr={lr}", f"train.epochs={epochs}", f"seed={seed}"]
    cfg = load_config("tiny-train", overrides, ExperimentConfig, PACKAGE)
    test = finished(out) or quiet(train_descendant, cfg, pool_dir, cfg_id, out, init=init)
    val = [r for r in read_metrics(out / "metrics.jsonl") if r["split"] == "val"][-1]
    return {"val": val["accuracy"], "test": test["accuracy"]}


def run_arm(
    pools: dict, cfg_id: int, arm: str, epochs: int, seeds: list[int], root: Path
) -> tuple[float, list[float]]:
    """Sweep the arm's learning rates on the first seed, then run the other seeds at the best one."""
    init, first = ("pool" if arm == "pool" else "scratch"), seeds[0]
    sweep = {
        lr: finetune(pools[first], cfg_id, init, lr, epochs, first, root / f"s{first}-{arm}-{cfg_id}-{lr}")
        for lr in LRS[init]
    }
    best = max(sweep, key=lambda lr: (sweep[lr]["val"], -lr))
    tests = [sweep[best]["test"]]
    for seed in seeds[1:]:
        tests.append(
            finetune(pools[seed], cfg_id, init, best, epochs, seed, root / f"s{seed}-{arm}-{cfg_id}-{best}")[
                "test"
            ]
        )
    return best, tests


def anchors_parameters() -> int:
    total = 0
    for width in (32, 48, 64):
        with torch.device("meta"):
            model = timm.create_model(
                "vit_tiny_patch16_224", img_size=16, patch_size=4, in_chans=1, num_classes=10, embed_dim=width,
                depth=6, num_heads=4, mlp_ratio=2.0, class_token=False, global_pool="avg",
            )  # fmt: skip
        total += count_parameters(model)
    return total


def mean_spread(values: list[float]) -> str:
    return f"{statistics.mean(values):.3f} ± {statistics.stdev(values) if len(values) > 1 else 0.0:.3f}"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--json", help="also write the results to this JSON file")
    parser.add_argument("--png", help="write accuracy against parameters (one curve per arm) to this PNG")
    parser.add_argument("--workdir", help="keep every run here (default: a temporary directory)")
    parser.add_argument(
        "--smoke", action="store_true", help="one epoch everywhere, one learning rate per arm"
    )
    args = parser.parse_args()
    if args.smoke:
        BUDGET.update(dict.fromkeys(BUDGET, 1))
        LRS.update({arm: lrs[:1] for arm, lrs in LRS.items()})
    torch.set_num_threads(1)
    seeds = [int(s) for s in args.seeds.split(",")]

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(args.workdir or tmp)
        pools, pool_flops, ancestry_acc = {}, {}, []
        for seed in seeds:
            print(f"seed {seed}: ancestry, distillation, pool", file=sys.stderr, flush=True)
            ancestry = root / f"seed{seed}" / "ancestry"
            ancestry_acc.append(train_ancestry(ancestry, seed))
            pools[seed], pool_flops[seed], samples = make_pool(root / f"seed{seed}", ancestry, seed)
        pool, manifest = load_pool(pools[seeds[0]])
        shared = statistics.mean(pool_flops.values()) / len(
            pool.configs
        )  # distillation + pool training, per descendant
        rows = []
        for cfg in pool.configs:
            print(f"descendant {cfg.id}: sweeps and seeds", file=sys.stderr, flush=True)
            model = pool.descendant(cfg.id)
            flops = forward_flops(model, SHAPE)
            finetune_cost = BUDGET["finetune"] * samples * 3 * flops
            epochs = {"pool": BUDGET["finetune"], "scratch": BUDGET["finetune"]}
            epochs["scratch_equal_cost"] = max(1, round((shared + finetune_cost) / (samples * 3 * flops)))
            lrs, accuracy = {}, {}
            for arm in ARMS:
                lrs[arm], accuracy[arm] = run_arm(pools, cfg.id, arm, epochs[arm], seeds, root / "finetune")
            rows.append({
                "id": cfg.id, "descendant": describe(pool, cfg.id), "parameters": count_parameters(model),
                "flops": flops, "accuracy": accuracy, "lr": lrs, "epochs": epochs, "finetune_cost": finetune_cost,
                "pool_total_cost": shared + finetune_cost,
            })  # fmt: skip
        rows.sort(key=lambda r: r["parameters"])
        storage = {
            "pool": count_parameters(pool),
            "ancestry": manifest["ancestry"]["parameters"],
            "three_anchors": anchors_parameters(),
        }

    if args.json:
        result = {"rows": rows, "storage": storage, "seeds": seeds, "budget_epochs": BUDGET, "lrs": LRS,
                  "ancestry_test_accuracy": ancestry_acc, "shared_cost_per_descendant": shared}  # fmt: skip
        Path(args.json).write_text(json.dumps(result, indent=2))
    report(rows, storage, seeds, samples, ancestry_acc, shared)
    if args.png:
        plot(rows, args.png)


def report(rows, storage, seeds, samples, ancestry_acc, shared) -> None:
    print(
        f"\n{platform.machine()}, {torch.get_num_threads()} thread, torch {torch.__version__}; seeds {seeds}; digits, "
        f"10 classes, {samples} training images; epochs: {BUDGET}"
    )
    print(
        "| id | descendant | params | MFLOPs | pool, fine-tuned | scratch, same budget | scratch, equal total cost "
        "(epochs) | fine-tune cost (GFLOPs) | pool total cost (GFLOPs) |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        a = r["accuracy"]
        print(
            f"| {r['id']} | {r['descendant']} | {r['parameters']:,} | {r['flops'] / 1e6:.2f} | {mean_spread(a['pool'])} "
            f"| {mean_spread(a['scratch'])} | {mean_spread(a['scratch_equal_cost'])} ({r['epochs']['scratch_equal_cost']}) "
            f"| {r['finetune_cost'] / 1e9:.1f} | {r['pool_total_cost'] / 1e9:.1f} |"
        )
    for arm in ("scratch", "scratch_equal_cost"):
        better = sum(min(r["accuracy"]["pool"]) > max(r["accuracy"][arm]) for r in rows)
        at_least = sum(
            statistics.mean(r["accuracy"]["pool"]) >= statistics.mean(r["accuracy"][arm]) for r in rows
        )
        print(
            f"pool vs {ARMS[arm]}: pool >= in the mean on {at_least}/{len(rows)} descendants, "
            f"pool's worst seed above the baseline's best on {better}/{len(rows)}"
        )
    ratio = statistics.mean(r["pool_total_cost"] / r["finetune_cost"] for r in rows)
    print(
        f"total cost: distillation + pool training = {shared * len(rows) / 1e9:.0f} GFLOPs per pool "
        f"({shared / 1e9:.1f} per descendant); a descendant's total cost is {ratio:.1f}x the scratch budget on average"
    )
    print(
        f"ancestry ({BUDGET['ancestry']} epochs, width 64, 6 blocks) test accuracy: {mean_spread(ancestry_acc)}"
    )
    print(
        f"storage: pool {storage['pool']:,} parameters; ancestry {storage['ancestry']:,}; three anchors "
        f"{storage['three_anchors']:,}; pool / anchors = {storage['pool'] / storage['three_anchors']:.2f}, "
        f"(ancestry + pool) / anchors = {(storage['pool'] + storage['ancestry']) / storage['three_anchors']:.2f}"
    )


def plot(rows: list[dict], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    for arm, label in ARMS.items():
        xs = [r["parameters"] for r in rows]
        means = [statistics.mean(r["accuracy"][arm]) for r in rows]
        spreads = [statistics.stdev(r["accuracy"][arm]) if len(r["accuracy"][arm]) > 1 else 0 for r in rows]
        ax.errorbar(xs, means, yerr=spreads, marker="o", capsize=3, label=label)
    ax.set_xscale("log")
    ax.set_xlabel("parameters")
    ax.set_ylabel("test accuracy (mean ± std over seeds)")
    ax.set_title(f"digits: pool descendants ({BUDGET['finetune']}-epoch fine-tune) vs scratch")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    main()
