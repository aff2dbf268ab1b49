"""Few-shot descendants on unseen classes: heur / auto learngene layers against random init and the whole ancestry.

    python tools/bench/inherit_vs_random.py [--shots 5,10,20] [--seeds 0,1,2] [--lrs 3e-4,1e-3,3e-3]
                                            [--epochs 30] [--json out.json] [--png plot.png]

One process: the heur-learngene `tiny` collective model (a 13-conv VGG trained on digits 0-5 as three 2-class
tasks, widened per task) is the ancestry of every arm. Arms, all the same (widened) architecture, trained on a
4-way task of digits 6-9 with `shots` training images per class:
  heur    the heur learngene (k steadiest layers by the gradient criterion) inherited, the rest fresh;
  auto    the auto learngene (k layers with the largest meta-learned transfer weight; pseudo-descendant task:
          digits 4-5, 20 images per class) inherited, the rest fresh;
  random  nothing inherited (every tensor freshly initialised);
  whole   every conv layer of the ancestry inherited (fine-tuning the whole ancestry with a new classifier).
Each arm picks its learning rate per shot count from `lrs` by mean validation accuracy over the seeds; the table
reports test accuracy at that rate (mean and spread over seeds) and the epochs to reach random init's final
validation accuracy. The collective training and the meta-training are charged as optimizer steps.
TLEG/SWS descendants do not apply here: they generate ViT blocks, the ancestry is a VGG.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
from pathlib import Path

import torch

from auto_learngene.condense import condense
from auto_learngene.config import CondenseConfig
from heur_learngene.collective import run_collective
from heur_learngene.config import CollectiveConfig
from learngene_core.config import load_config
from learngene_core.learngene.artifact import Learngene
from learngene_core.learngene.config import AncestryConfig
from learngene_core.learngene.extract import load_ancestry
from learngene_core.learngene.inherit import descendant_model_config, layer_prefixes, make_layer_learngene
from learngene_core.learngene.layer_descendants import LayerDescendantConfig, train_descendant
from learngene_core.metrics import METRICS_NAME, read_metrics

ARMS = ("heur", "auto", "random", "whole")
NEW_CLASSES = [6, 7, 8, 9]


def steps_of(run_dir: Path) -> int:
    return max(r["step"] for r in read_metrics(run_dir / METRICS_NAME))


def val_curve(run_dir: Path) -> list[float]:
    return [r["accuracy"] for r in read_metrics(run_dir / METRICS_NAME) if r["split"] == "val"]


def learngenes(work: Path, k: int) -> tuple[dict[str, Learngene], dict[str, int]]:
    """The heur, auto and whole-ancestry learngenes from one collective run, and what each cost in steps."""
    heur_cfg = load_config("tiny", [f"method.k={k}"], CollectiveConfig, "heur_learngene.configs")
    heur, _ = run_collective(heur_cfg, work / "heur")
    runs = sorted((work / "heur" / "collective").iterdir())
    cost = {"heur": sum(steps_of(r) for r in runs)}
    ancestry_run = runs[-1]
    auto_cfg = load_config(
        "tiny", [f"ancestry.run={ancestry_run}", f"method.k={k}"], CondenseConfig, "auto_learngene.configs"
    )
    auto, _ = condense(auto_cfg, work / "auto")
    inner = auto_cfg.method.inner_steps + 1
    cost["auto"] = cost["heur"] + steps_of(work / "auto" / "pseudo-descendant") * (1 + inner)
    ancestry, _ = load_ancestry(AncestryConfig(run=str(ancestry_run)), None, ())
    every = list(range(len(layer_prefixes(ancestry))))
    whole = make_layer_learngene(
        "whole-ancestry", ancestry, descendant_model_config(heur), every, {"k": len(every)},
        {"input_shape": heur.manifest["input_shape"]},
    )  # fmt: skip
    cost["whole"], cost["random"] = cost["heur"], 0
    return {"heur": heur, "auto": auto, "whole": whole}, cost


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--shots", default="5,10,20")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--lrs", default="3e-4,1e-3,3e-3")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--k", type=int, default=3)
    parser.add_argument("--json")
    parser.add_argument("--png")
    args = parser.parse_args()
    torch.set_num_threads(1)
    shots = [int(s) for s in args.shots.split(",")]
    seeds = [int(s) for s in args.seeds.split(",")]
    lrs = [float(x) for x in args.lrs.split(",")]

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        genes, cost = learngenes(work, args.k)
        runs: dict[tuple, dict] = {}
        for shot in shots:
            for arm in ARMS:
                gene = genes.get(arm, genes["heur"])
                for lr in lrs:
                    for seed in seeds:
                        overrides = [
                            f"data.classes={NEW_CLASSES}", f"data.samples_per_class={shot}",
                            f"train.lr={lr}", f"train.epochs={args.epochs}", f"seed={seed}",
                            f"train.checkpoint_every={10**6}",
                        ]  # fmt: skip
                        cfg = load_config(
                            "tiny-descendant", overrides, LayerDescendantConfig, "heur_learngene.configs"
                        )
                        out = work / f"d-{arm}-{shot}-{lr}-{seed}"
                        init = "random" if arm == "random" else "learngene"
                        test, _ = train_descendant(gene, cfg, init, out, quiet=True)
                        runs[(arm, shot, lr, seed)] = {"test": test["accuracy"], "val": val_curve(out)}
                        print(arm, shot, lr, seed, f"{test['accuracy']:.3f}", flush=True)
    rows = summarise(runs, shots, seeds, lrs, cost)
    header = (
        f"{platform.machine()}, {os.cpu_count()} cores (shared, loaded), 1 torch thread, torch {torch.__version__}; "
        f"{args.epochs} epochs, lrs {lrs}, seeds {seeds}, k={args.k}"
    )
    print(header)
    print(table(rows))
    record = {"setup": header, "rows": rows, "layers": {a: g.spec["layers"] for a, g in genes.items()}}
    print("learngene layers:", record["layers"])
    if args.json:
        Path(args.json).write_text(json.dumps(record, indent=2))
    if args.png:
        plot(rows, shots, Path(args.png))


def summarise(runs: dict, shots: list[int], seeds: list[int], lrs: list[float], cost: dict) -> list[dict]:
    rows = []
    for shot in shots:
        best = {}
        for arm in ARMS:
            lr = max(lrs, key=lambda x: statistics.mean(runs[(arm, shot, x, s)]["val"][-1] for s in seeds))
            best[arm] = lr
        for arm in ARMS:
            lr = best[arm]
            tests = [runs[(arm, shot, lr, s)]["test"] for s in seeds]
            reach = []
            for s in seeds:
                target = runs[("random", shot, best["random"], s)]["val"][-1]
                curve = runs[(arm, shot, lr, s)]["val"]
                reach.append(next((i + 1 for i, v in enumerate(curve) if v >= target), None))
            rows.append({
                "arm": arm, "shots": shot, "lr": lr, "test_mean": statistics.mean(tests),
                "test_std": statistics.stdev(tests) if len(tests) > 1 else 0.0, "tests": tests,
                "epochs_to_random_final": reach, "prior_steps": cost[arm],
            })  # fmt: skip
    return rows


def table(rows: list[dict]) -> str:
    lines = [
        "| shots/class | arm | best lr | test acc (mean ± std over seeds) | epochs to random's final val acc (per seed) "
        "| forward-backward passes spent before the descendant |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        reach = ", ".join("-" if e is None else str(e) for e in r["epochs_to_random_final"])
        lines.append(
            f"| {r['shots']} | {r['arm']} | {r['lr']:g} | {r['test_mean']:.3f} ± {r['test_std']:.3f} | {reach} "
            f"| {r['prior_steps']:,} |"
        )
    return "\n".join(lines)


def plot(rows: list[dict], shots: list[int], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.4))
    for arm in ARMS:
        mine = [r for r in rows if r["arm"] == arm]
        ax.errorbar(shots, [r["test_mean"] for r in mine], yerr=[r["test_std"] for r in mine], marker="o",
                    capsize=3, label=arm)  # fmt: skip
    ax.set_xscale("log")
    ax.minorticks_off()
    ax.set_xticks(shots, [str(s) for s in shots])
    ax.set_xlabel("training images per class (digits 6-9)")
    ax.set_ylabel("test accuracy")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


if __name__ == "__main__":
    main()
