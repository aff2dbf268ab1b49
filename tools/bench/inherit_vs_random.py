"""Few-shot descendants on unseen classes: heur / auto learngene layers against random init and the whole ancestry.

    python tools/bench/inherit_vs_random.py [--backbone vgg|vit] [--shots 5,10,20] [--seeds 0,1,2]
                                            [--lrs 3e-4,1e-3,3e-3] [--epochs 30] [--workers 1] [--json out.json]
                                            [--png plot.png]

One process: the heur-learngene collective model (`--backbone vgg`: preset `tiny`, a 13-conv VGG; `vit`: preset
`tiny-vit`, a 6-block timm ViT; trained on digits 0-5 as three 2-class tasks, widened per task) is the ancestry of
every arm. Arms, all the same (widened) architecture, trained on a 4-way task of digits 6-9 with `shots` training
images per class:
  heur    the heur learngene (k steadiest layers by the gradient criterion) inherited, the rest fresh;
  auto    the auto learngene (k layers with the largest meta-learned transfer weight; pseudo-descendant task:
          digits 4-5, 20 images per class) inherited, the rest fresh;
  random  nothing inherited (every tensor freshly initialised);
  whole   every layer of the ancestry inherited (fine-tuning the whole ancestry with a new classifier; the ViT's
          patch and position embeddings and final norm are inherited too);
  tleg    (ViT only) a TLEG learngene distilled from the same ancestry on its last task (digits 4-5) with the
          tleg package's `tiny` recipe (aux net of 6 blocks, the ancestry's width, heads and patch), expanded to
          a 6-block descendant: same depth and width as the other arms, every MLP at the unwidened ratio 2;
  sws     (ViT only) the same with an SWS learngene (sws `tiny`: 3 stages of 2 blocks), expanded to 6 blocks.
Each arm picks its learning rate per shot count from `lrs` by mean final validation accuracy over the first
`--sweep-seeds` seeds (the same sweep for every arm), then runs every seed at that rate; the table
reports test accuracy at that rate (mean and spread over seeds) and the epochs to reach random init's final
validation accuracy. The collective training, the meta-training and the aux-net distillation are charged as
optimizer steps. TLEG/SWS descendants apply only to the ViT backbone: they generate ViT blocks.
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
from forked import run_missing
from timm.models.vision_transformer import VisionTransformer

from auto_learngene.condense import condense
from auto_learngene.config import CondenseConfig
from heur_learngene.collective import run_collective
from heur_learngene.config import CollectiveConfig
from learngene_core import experiment
from learngene_core.config import ExperimentConfig, ModelConfig, load_config
from learngene_core.learngene.anatomy import VIT_NAME
from learngene_core.learngene.artifact import Learngene
from learngene_core.learngene.config import AncestryConfig, ExtractConfig
from learngene_core.learngene.descendants import build_descendant
from learngene_core.learngene.extract import AUX_RUN, extract, load_ancestry
from learngene_core.learngene.inherit import (
    build_layer_descendant,
    descendant_model_config,
    layer_prefixes,
    make_layer_learngene,
)
from learngene_core.learngene.layer_descendants import LayerDescendantConfig, train_descendant
from learngene_core.metrics import METRICS_NAME, read_metrics
from learngene_core.models import count_parameters

LAYER_ARMS = ("heur", "auto", "random", "whole")
BLOCK_ARMS = ("tleg", "sws")  # generated ViT blocks: ViT backbone only
PRESETS = {"vgg": "tiny", "vit": "tiny-vit"}
NEW_CLASSES = [6, 7, 8, 9]


def steps_of(run_dir: Path) -> int:
    return max(r["step"] for r in read_metrics(run_dir / METRICS_NAME))


def val_curve(run_dir: Path) -> list[float]:
    return [r["accuracy"] for r in read_metrics(run_dir / METRICS_NAME) if r["split"] == "val"]


def learngenes(work: Path, backbone: str, k: int) -> tuple[dict, dict[str, int], object]:
    """The learngene of every arm from one collective run, what each cost in steps, and the ancestry."""
    heur_cfg = load_config(PRESETS[backbone], [f"method.k={k}"], CollectiveConfig, "heur_learngene.configs")
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
    genes = {"heur": heur, "auto": auto, "whole": whole}
    if backbone == "vit":
        for arm in BLOCK_ARMS:
            genes[arm] = block_learngene(arm, ancestry_run, len(every), work / arm)
            cost[arm] = cost["heur"] + steps_of(work / arm / AUX_RUN)  # each aux step also runs the ancestry
    return genes, cost, ancestry


def block_learngene(arm: str, ancestry_run: Path, depth: int, out: Path) -> tuple[Learngene, object]:
    """A TLEG or SWS learngene distilled from the collective model on its last task, with its package's `tiny`
    recipe; the aux net has the ancestry's depth, width, heads and patch."""
    import sws
    import tleg

    method = {"tleg": tleg.TLEG(), "sws": sws.SWS()}[arm]
    task = load_config(str(ancestry_run / experiment.CONFIG_NAME), []).data.classes
    overrides = [f"ancestry.run={ancestry_run}", f"data.classes={task}", "train.progress=false"]
    cfg = load_config("tiny", overrides, ExtractConfig, f"{arm}.configs")
    if len(method.aux_layout(method.parse_spec(cfg.method))) != depth:
        raise SystemExit(f"the {arm} tiny preset's aux net is not {depth} blocks deep like the ancestry")
    learngene, _ = extract(method, cfg, out)
    return learngene, method


def descendant_run(
    arm: str, genes: dict, cfg: LayerDescendantConfig, ancestry, out: Path
) -> dict[str, float]:
    """Train arm `arm`'s descendant under `cfg` (data, train, seed) in `out`; its test metrics."""
    if arm in BLOCK_ARMS:  # a timm ViT expanded from the learngene, new head
        learngene, method = genes[arm]
        exp = vit_experiment(cfg)
        run = experiment.prepare_run(exp)
        layout = method.default_layout(len(layer_prefixes(ancestry)), learngene.spec)
        model, _ = build_descendant("learngene", learngene, method, layout, run, load_head=False)
        return experiment.train(exp, out, model=model, run=run)
    gene = genes.get(arm, genes["heur"])
    if arm == "whole" and isinstance(ancestry, VisionTransformer):  # the embeddings and final norm too
        exp = cfg.experiment(gene)
        run = experiment.prepare_run(exp)
        model, _, _ = build_layer_descendant(
            gene, "learngene", num_classes=run.splits.num_classes, input_shape=run.splits.input_shape,
            seed=cfg.seed,
        )  # fmt: skip
        state, source = model.state_dict(), ancestry.state_dict()
        state.update({n: t for n, t in source.items() if not n.startswith("head.")})
        model.load_state_dict(state)
        return experiment.train(exp, out, model=model, run=run)
    init = "random" if arm == "random" else "learngene"
    return train_descendant(gene, cfg, init, out, quiet=True)[0]


def vit_experiment(cfg: LayerDescendantConfig) -> ExperimentConfig:
    """The experiment of a TLEG/SWS descendant: the same data, training and seed (its shape is the learngene's)."""
    return ExperimentConfig(ModelConfig("timm", VIT_NAME), cfg.data, cfg.train, cfg.seed)


def parameters_of(arm: str, genes: dict, cfg: LayerDescendantConfig, ancestry) -> int:
    """The descendant's parameter count on the 4-way task (built once, not trained)."""
    if arm in BLOCK_ARMS:
        learngene, method = genes[arm]
        run = experiment.prepare_run(vit_experiment(cfg))
        layout = method.default_layout(len(layer_prefixes(ancestry)), learngene.spec)
        return count_parameters(build_descendant("learngene", learngene, method, layout, run, False)[0])
    gene = genes.get(arm, genes["heur"])
    model, _, _ = build_layer_descendant(
        gene, "random", num_classes=len(NEW_CLASSES), input_shape=tuple(genes["heur"].manifest["input_shape"])
    )
    return count_parameters(model)


CONTEXT: dict = {}  # what the forked workers share: learngenes, ancestry, epochs, work dir


def run_key(key: tuple) -> tuple[tuple, dict]:
    """One descendant (arm, shots, lr, seed) on digits 6-9, in a worker forked after the learngenes were made."""
    torch.set_num_threads(1)
    arm, shot, lr, seed = key
    overrides = [
        f"data.classes={NEW_CLASSES}", f"data.samples_per_class={shot}", f"train.lr={lr}",
        f"train.epochs={CONTEXT['epochs']}", f"seed={seed}", f"train.checkpoint_every={10**6}",
    ]  # fmt: skip
    cfg = load_config("tiny-descendant", overrides, LayerDescendantConfig, "heur_learngene.configs")
    genes, ancestry = CONTEXT["genes"], CONTEXT["ancestry"]
    out = CONTEXT["work"] / f"d-{arm}-{shot}-{lr}-{seed}"
    test = descendant_run(arm, genes, cfg, ancestry, out)
    size = parameters_of(arm, genes, cfg, ancestry)
    return key, {"test": test["accuracy"], "val": val_curve(out), "parameters": size}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--backbone", choices=sorted(PRESETS), default="vgg")
    parser.add_argument("--shots", default="5,10,20")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--lrs", default="3e-4,1e-3,3e-3")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument(
        "--sweep-seeds", type=int, default=3, help="seeds the learning-rate sweep averages over"
    )
    parser.add_argument(
        "--k", type=int, help="learngene layers (default: 3 of 13 VGG convs, 2 of 6 ViT blocks)"
    )
    parser.add_argument(
        "--workers", type=int, default=1, help="descendants trained in parallel (one thread each)"
    )
    parser.add_argument("--json")
    parser.add_argument(
        "--resume", action="store_true", help="reuse the runs already in --json (same settings)"
    )
    parser.add_argument("--png")
    args = parser.parse_args()
    torch.set_num_threads(1)
    shots = [int(s) for s in args.shots.split(",")]
    seeds = [int(s) for s in args.seeds.split(",")]
    lrs = [float(x) for x in args.lrs.split(",")]

    k = args.k or {"vgg": 3, "vit": 2}[args.backbone]
    arms = LAYER_ARMS + (BLOCK_ARMS if args.backbone == "vit" else ())

    header = (
        f"{platform.machine()}, {os.cpu_count()} cores (shared, loaded), 1 torch thread, torch {torch.__version__}; "
        f"{args.workers} worker(s); backbone {args.backbone}, {args.epochs} epochs, lrs {lrs} (swept on seeds "
        f"{seeds[: args.sweep_seeds]}), seeds {seeds}, k={k}"
    )
    runs: dict[tuple, dict] = {}
    if args.resume and args.json and Path(args.json).is_file():  # runs of an interrupted bench, same settings
        for key, value in json.loads(Path(args.json).read_text())["runs"].items():
            arm, shot, lr, seed = key.split("/")
            runs[(arm, int(shot), float(lr), int(seed))] = value
    record: dict = {"setup": header, "rows": []}

    def save() -> None:
        if args.json:  # after every run, so an interrupted bench keeps its runs and finished rows
            curves = {"/".join(map(str, k)): v for k, v in runs.items()}
            Path(args.json).write_text(json.dumps({**record, "runs": curves}, indent=2))

    def on_result(key: tuple, result: dict) -> None:
        print(*key, f"{result['test']:.3f}", flush=True)
        save()

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        genes, cost, ancestry = learngenes(work, args.backbone, k)
        CONTEXT.update(genes=genes, ancestry=ancestry, epochs=args.epochs, work=work)
        record["layers"] = {a: g.spec["layers"] for a, g in genes.items() if a in LAYER_ARMS}
        sweep = seeds[: args.sweep_seeds]  # the same sweep for every arm
        best: dict[tuple[str, int], float] = {}
        for shot in shots:  # shot by shot, so an interrupted bench has its smaller shot counts complete
            run_missing(run_key, [(a, shot, lr, s) for a in arms for lr in lrs for s in sweep], runs, args.workers,
                        on_result)  # fmt: skip
            for arm in arms:
                final = {
                    lr: statistics.mean(runs[(arm, shot, lr, s)]["val"][-1] for s in sweep) for lr in lrs
                }
                best[(arm, shot)] = max(lrs, key=final.get)
            run_missing(run_key, [(a, shot, best[(a, shot)], s) for a in arms for s in seeds], runs, args.workers,
                        on_result)  # fmt: skip
            record["rows"] += summarise(runs, best, arms, [shot], seeds, lrs, cost)
            save()
    print(header)
    print(table(record["rows"]))
    print("learngene layers:", record["layers"])
    if args.png:
        plot(record["rows"], arms, shots, Path(args.png))


def summarise(
    runs: dict,
    best: dict,
    arms: tuple,
    shots: list[int],
    seeds: list[int],
    lrs: list[float],
    cost: dict,
) -> list[dict]:
    rows = []
    for shot in shots:
        for arm in arms:
            lr = best[(arm, shot)]
            tests = [runs[(arm, shot, lr, s)]["test"] for s in seeds]
            reach = []
            for s in seeds:
                target = runs[("random", shot, best[("random", shot)], s)]["val"][-1]
                curve = runs[(arm, shot, lr, s)]["val"]
                reach.append(next((i + 1 for i, v in enumerate(curve) if v >= target), None))
            rows.append({
                "arm": arm, "shots": shot, "lr": lr, "test_mean": statistics.mean(tests),
                "test_std": statistics.stdev(tests) if len(tests) > 1 else 0.0, "tests": tests,
                "epochs_to_random_final": reach, "prior_steps": cost[arm], "parameters": runs[(arm, shot, lr, seeds[0])]["parameters"],
                "lr_at_sweep_edge": lr in (min(lrs), max(lrs)),
            })  # fmt: skip
    return rows


def table(rows: list[dict]) -> str:
    lines = [
        "| shots/class | arm | parameters | best lr | test acc (mean ± std over seeds) | epochs to random's final val "
        "acc (per seed) | optimizer steps spent before the descendant |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        reach = ", ".join("-" if e is None else str(e) for e in r["epochs_to_random_final"])
        edge = " (sweep edge)" if r["lr_at_sweep_edge"] else ""
        lines.append(
            f"| {r['shots']} | {r['arm']} | {r['parameters']:,} | {r['lr']:g}{edge} | {r['test_mean']:.3f} ± "
            f"{r['test_std']:.3f} | {reach} | {r['prior_steps']:,} |"
        )
    return "\n".join(lines)


def plot(rows: list[dict], arms: tuple, shots: list[int], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.4))
    for arm in arms:
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
