"""Few-shot descendants on unseen classes: heur / auto learngene layers against random init and the whole ancestry.

    python tools/bench/inherit_vs_random.py [--backbone vgg|vit] [--shots 5,10,20] [--seeds 0,1,2]
                                            [--lrs 3e-4,1e-3,3e-3] [--max-extensions 2] [--epochs 30]
                                            [--workers 1] [--json out.json] [--resume] [--png plot.png]

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
  tleg    (ViT only) a TLEG learngene distilled from the same ancestry along its whole stream: task after task
          (digits 0-1, 2-3, 4-5), from the collective model as it was after that task, the aux net carried
          over (`extract(..., start=)`), with the tleg package's `tiny` recipe (20 epochs per task; aux net of 6
          blocks, the ancestry's width, heads and patch, every MLP at the ancestry's mean MLP width, so the
          descendant has the other arms' parameter count), expanded to a 6-block descendant;
  sws     (ViT only) the same with an SWS learngene (sws `tiny`: 3 stages of 2 blocks), expanded to 6 blocks.
Every arm, shot count and seed gets its own learning-rate sweep (`learngene_core.sweep`: the `--lrs` grid,
extended one grid step past an edge while the best rate sits there, at most `--max-extensions` times), scored
by the run's validation plateau (mean accuracy over its last quarter of epochs). The table reports, per arm and
shot count, test accuracy at each seed's best rate (mean and spread over seeds), in how many seeds the arm beats
random init's test accuracy, the epochs each seed's run needs to converge (first epoch at its own plateau) and to
reach random init's plateau, and the rates (flagged where a sweep ran out of extensions at an edge). The
collective training, the meta-training and the aux-net distillation are charged as optimizer steps. TLEG/SWS
descendants apply only to the ViT backbone: they generate ViT blocks.
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
from learngene_core.learngene.cost import plateau, steps_to_reach
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
from learngene_core.sweep import sweep

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
    ancestry_run = runs[-1]  # the collective model after the last task
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
        hidden = mean_mlp_hidden(ancestry)
        for arm in BLOCK_ARMS:
            genes[arm], aux_steps = block_learngene(arm, runs, hidden, work / arm)
            cost[arm] = cost["heur"] + aux_steps  # each aux step also runs the ancestry
    return genes, cost, ancestry


def mean_mlp_hidden(vit: VisionTransformer) -> int:
    """The blocks' mean MLP hidden width, rounded: blocks all that wide hold (nearly) the same parameters."""
    widths = [block.mlp.fc1.out_features for block in vit.blocks]
    return round(sum(widths) / len(widths))


def block_learngene(
    arm: str, task_runs: list[Path], hidden: int, out: Path
) -> tuple[tuple[Learngene, object], int]:
    """A TLEG or SWS learngene distilled along the collective stream, and its aux steps.

    Task after task, on that task's images, from the collective model as it was after that task, the aux net
    carried over; the package's `tiny` recipe with MLPs `hidden` wide and the ancestry's depth, width, heads, patch.
    """
    import sws
    import tleg

    method = {"tleg": tleg.TLEG(), "sws": sws.SWS()}[arm]
    learngene, steps = None, 0
    for t, task_run in enumerate(task_runs):
        task_cfg = load_config(str(task_run / experiment.CONFIG_NAME), [])
        embed_dim = task_cfg.model.kwargs["embed_dim"]
        overrides = [
            f"ancestry.run={task_run}", f"data.classes={task_cfg.data.classes}", "train.progress=false",
            f"model.kwargs.mlp_ratio={hidden / embed_dim}",
        ]  # fmt: skip
        cfg = load_config("tiny", overrides, ExtractConfig, f"{arm}.configs")
        if len(method.aux_layout(method.parse_spec(cfg.method))) != task_cfg.model.kwargs["depth"]:
            raise SystemExit(f"the {arm} tiny preset's aux net is not as deep as the ancestry")
        learngene, _ = extract(method, cfg, out / f"task-{t}", start=learngene)
        steps += steps_of(out / f"task-{t}" / AUX_RUN)
    return (learngene, method), steps


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
    parser.add_argument(
        "--max-extensions", type=int, default=2, help="sweep points allowed past the grid's edges"
    )
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument(
        "--sweep", choices=("each", "first"), default="each",
        help="each: every seed its own sweep; first: sweep on the first seed, the others at its best rate",
    )  # fmt: skip
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
    swept = seeds if args.sweep == "each" else seeds[:1]
    setup = {
        "machine": machine(), "threads": 1, "workers": args.workers, "torch": torch.__version__,
        "backbone": args.backbone, "epochs": args.epochs, "lrs": lrs, "max_extensions": args.max_extensions,
        "swept_seeds": swept, "seeds": seeds, "k": k, "load_average_start": os.getloadavg(),
    }  # fmt: skip
    runs: dict[tuple, dict] = {}
    if args.resume and args.json and Path(args.json).is_file():  # runs of an interrupted bench, same settings
        for key, value in json.loads(Path(args.json).read_text())["runs"].items():
            arm, shot, lr, seed = key.split("/")
            runs[(arm, int(shot), float(lr), int(seed))] = value
    record: dict = {"setup": setup, "rows": []}

    def save() -> None:
        if args.json:  # after every run, so an interrupted bench keeps its runs and finished rows
            curves = {"/".join(map(str, k)): v for k, v in runs.items()}
            Path(args.json).write_text(json.dumps({**record, "runs": curves}, indent=2))

    def on_result(key: tuple, result: dict) -> None:
        print(*key, f"{result['test']:.3f}", flush=True)
        save()

    def tune(arm: str, shot: int, seed: int) -> dict:
        def run(lr: float) -> dict:
            run_missing(run_key, [(arm, shot, lr, seed)], runs, 1, on_result)
            return runs[(arm, shot, lr, seed)]

        result = sweep(run, lrs, score=lambda r: converged(r["val"]), max_extensions=args.max_extensions)
        return {"lr": result.best, "at_edge": result.at_edge}

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        genes, cost, ancestry = learngenes(work, args.backbone, k)
        CONTEXT.update(genes=genes, ancestry=ancestry, epochs=args.epochs, work=work)
        record["layers"] = {a: g.spec["layers"] for a, g in genes.items() if a in LAYER_ARMS}
        best: dict[tuple[str, int, int], dict] = {}  # (arm, shot, seed) -> {"lr", "at_edge"}
        for shot in shots:  # shot by shot, so an interrupted bench has its smaller shot counts complete
            run_missing(
                run_key,
                [(a, shot, lr, s) for a in arms for s in swept for lr in lrs],
                runs,
                args.workers,
                on_result,
            )  # fmt: skip  (the grid, in parallel; then each sweep extends its own)
            for arm in arms:
                for seed in swept:
                    best[(arm, shot, seed)] = tune(arm, shot, seed)
                for seed in seeds[len(swept) :]:
                    best[(arm, shot, seed)] = best[(arm, shot, swept[0])]
            run_missing(run_key, [(a, shot, best[(a, shot, s)]["lr"], s) for a in arms for s in seeds], runs,
                        args.workers, on_result)  # fmt: skip
            record["rows"] += summarise(runs, best, arms, shot, seeds, cost)
            setup["load_average_end"] = os.getloadavg()
            save()
    print(describe(setup))
    print(table(record["rows"]))
    print("learngene layers:", record["layers"])
    if args.png:
        plot(record["rows"], arms, shots, Path(args.png))


def machine() -> str:
    """The CPU model and core count."""
    cpuinfo = Path("/proc/cpuinfo")
    models = [line.split(":", 1)[1].strip() for line in cpuinfo.read_text().splitlines()
              if line.startswith("model name")] if cpuinfo.is_file() else []  # fmt: skip
    return f"{models[0] if models else platform.processor() or platform.machine()}, {os.cpu_count()} cores"


def describe(setup: dict) -> str:
    load = "/".join(f"{x:.1f}" for x in setup["load_average_start"])
    end = "/".join(f"{x:.1f}" for x in setup.get("load_average_end", ()))
    return (
        f"{setup['machine']} (shared), {setup['threads']} torch thread, {setup['workers']} worker(s), torch "
        f"{setup['torch']}; backbone {setup['backbone']}, {setup['epochs']} epochs, lr grid {setup['lrs']} (+ up to "
        f"{setup['max_extensions']} extensions past an edge), swept on seeds {setup['swept_seeds']}, seeds "
        f"{setup['seeds']}, k={setup['k']}; load average (1/5/15 min) {load} at start, {end} at end"
    )


def converged(curve: list[float]) -> float:
    """A run's validation plateau: its mean accuracy over the last quarter of epochs."""
    return plateau(list(enumerate(curve, 1)))


def epochs_to_reach(curve: list[float], target: float) -> int | None:
    """The first epoch (1-based) whose validation accuracy is at least `target`; None if none is."""
    return steps_to_reach(list(enumerate(curve, 1)), target)


def summarise(runs: dict, best: dict, arms: tuple, shot: int, seeds: list[int], cost: dict) -> list[dict]:
    """One row per arm at `shot` images per class: every seed's run at that seed's best rate, against random's."""
    rows = []
    for arm in arms:
        mine = [runs[(arm, shot, best[(arm, shot, s)]["lr"], s)] for s in seeds]
        random = [runs[("random", shot, best[("random", shot, s)]["lr"], s)] for s in seeds]
        tests = [r["test"] for r in mine]
        rows.append({
            "arm": arm, "shots": shot, "lrs": [best[(arm, shot, s)]["lr"] for s in seeds],
            "at_edge": [best[(arm, shot, s)]["at_edge"] for s in seeds],
            "tests": tests, "test_mean": statistics.mean(tests),
            "test_std": statistics.stdev(tests) if len(tests) > 1 else 0.0,
            "seeds_above_random": sum(r["test"] > b["test"] for r, b in zip(mine, random)),
            "epochs_to_converge": [epochs_to_reach(r["val"], converged(r["val"])) for r in mine],
            "epochs_to_random_plateau": [epochs_to_reach(r["val"], converged(b["val"])) for r, b in zip(mine, random)],
            "epochs": len(mine[0]["val"]), "prior_steps": cost[arm], "parameters": mine[0]["parameters"],
        })  # fmt: skip
    return rows


def table(rows: list[dict]) -> str:
    lines = [
        "| shots/class | arm | parameters | best lr per seed (* sweep edge) | test acc (mean ± std) | seeds above "
        "random | epochs to converge (per seed) | epochs to random's plateau (per seed) | optimizer steps spent "
        "before the descendant |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lrs = ", ".join(f"{lr:g}{'*' if edge else ''}" for lr, edge in zip(r["lrs"], r["at_edge"]))
        above = "-" if r["arm"] == "random" else f"{r['seeds_above_random']}/{len(r['tests'])}"
        converge = ", ".join(map(str, r["epochs_to_converge"]))
        reach = ", ".join("-" if e is None else str(e) for e in r["epochs_to_random_plateau"])
        lines.append(
            f"| {r['shots']} | {r['arm']} | {r['parameters']:,} | {lrs} | {r['test_mean']:.3f} ± {r['test_std']:.3f} "
            f"| {above} | {converge} | {reach} | {r['prior_steps']:,} |"
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
