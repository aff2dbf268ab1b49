"""The seed's language-model claim at small scale: LoRA on learngene-initialised tiny Llamas against plain LoRA.

    python tools/bench/lm_learngene_lora.py [--seeds 0,1,2] [--fractions 0.1,0.25,0.5,0.75,1.0]
                                            [--lrs 1e-3,3e-3,1e-2] [--epochs 20] [--workers 1]
                                            [--json out.json [--resume]] [--png curves.png]

The claim (YuanMou README, figures only): on Llama2-7B, fine-tuning with LoRA after Heur-/Auto-Learngene needs
30% / 40% fewer epochs to converge and 60% / 50% of the data of vanilla LoRA. How this reads it at small scale:
- ancestry: a 4-layer Llama (width 64) trained from scratch on a synthetic Markov-chain "language" (seed 100);
- downstream task: another chain (seed s of the run), i.e. a new language of the same kind; val/test fixed;
- heur: the ancestry keeps training on a stream of three other chains (101-103) while every layer's gradient RMS
  is tracked; the k=2 steadiest late-stream layers are the learngene;
- auto: the meta-network of auto-learngene on a pseudo-descendant task (chain 104) picks k=2 layers;
- descendants (same shape as the ancestry): learngene layers copied, the other decoder layers fresh; embeddings,
  final norm and LM head copied from the ancestry (vocabulary-bound, as the core's LM expansion does) -- with LoRA
  the base is frozen, so the LoRA arms differ only in what the frozen base holds;
- arms, each with LoRA (peft, r=8 on every attention and MLP projection): heur, auto, `random` (plain LoRA on a
  randomly initialised model of that shape, the issue's baseline) and `whole` (LoRA on the ancestry itself).
Fine-tuning runs at a constant learning rate after warm-up, so a curve's plateau is the model's, not the
schedule's. LoRA on a few hundred sequences overfits after its plateau, so a run's converged loss is its best
validation loss (early stopping); the best-val gain over the last quarter of the budget shows whether it got there.
Every arm is swept on full data for every seed (`learngene_core.sweep`, widened past an edge while the best rate
sits there); the data-fraction runs use that seed's best rate and the full-data run's optimizer steps and
evaluation spacing (a smaller fraction repeats its data more often, so every fraction gets to its plateau).
Reported: best validation and final test loss; epochs until the validation loss reaches random's and whole's best
one (same seed); the fraction of the data needed for that loss, read off the loss-vs-fraction curve with
`learngene_core.learngene.cost.fraction_to_reach`.
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
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from forked import run_missing
from torch.utils.data import Subset

from auto_learngene.condense import condense
from auto_learngene.config import CondenseConfig
from heur_learngene.criterion import rank_layers
from heur_learngene.tracking import LayerTracker
from learngene_core import experiment
from learngene_core.config import ExperimentConfig, load_config
from learngene_core.data import build_dataloaders
from learngene_core.learngene.backbones import HFCausalLM
from learngene_core.learngene.config import AncestryConfig
from learngene_core.learngene.cost import fraction_to_reach
from learngene_core.learngene.extract import load_ancestry
from learngene_core.learngene.inherit import build_layer_descendant, make_layer_learngene
from learngene_core.metrics import METRICS_NAME, read_metrics
from learngene_core.sweep import sweep

ARMS = ("heur", "auto", "whole", "random")
TARGETS = ("random", "whole")  # the arms whose full-data best validation loss the others have to reach
LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def lm_config(seed: int, epochs: int, lr: float = 3e-3, scheduler: str = "cosine") -> ExperimentConfig:
    overrides = ["model.kwargs.num_hidden_layers=4", f"seed={seed}", f"train.epochs={epochs}", f"train.lr={lr}",
                 f"train.scheduler={scheduler}", "train.progress=false", f"train.checkpoint_every={10**6}"]  # fmt: skip
    return load_config("tiny-llama", overrides)


def ancestry_and_layers(work: Path, k: int) -> tuple[torch.nn.Module, dict[str, list[int]], object]:
    experiment.train(lm_config(100, 4), work / "ancestry")
    ancestry, _ = load_ancestry(AncestryConfig(run=str(work / "ancestry")), None, (32,), 128)
    # heur: continued training over a stream of three other chains, gradient RMS per layer tracked
    model, _ = load_ancestry(AncestryConfig(run=str(work / "ancestry")), None, (32,), 128)
    records = []
    for t, seed in enumerate((101, 102, 103)):
        tracker = LayerTracker(model)
        experiment.train(lm_config(seed, 1), work / f"heur-{t}", model=model)
        records.append({"task": t, **tracker.finish()})
    heur = rank_layers(records, "gradient", 0.5, k)["layers"]
    cfg = load_config(
        "tiny",
        [f"ancestry.run={work / 'ancestry'}", "data.name=synthetic-text", "data.image_size=null",
         "data.classes=null", "data.samples_per_class=null", "data.batch_size=32", "data.seq_len=32",
         "train.best_metric=loss", "train.best_mode=min", f"method.k={k}", "train.epochs=2", "seed=104"],
        CondenseConfig, "auto_learngene.configs",
    )  # fmt: skip
    auto, _ = condense(cfg, work / "auto")
    arch = lm_config(100, 1).model
    return ancestry, {"heur": heur, "auto": auto.spec["layers"]}, arch


def arm_model(arm: str, ancestry, layers: dict[str, list[int]], arch, seed: int) -> torch.nn.Module:
    if arm == "whole":
        return copy.deepcopy(ancestry)
    learngene = make_layer_learngene(arm, ancestry, arch, layers.get(arm, [0]), {})
    init = "random" if arm == "random" else "learngene"
    model, _, _ = build_layer_descendant(learngene, init, num_classes=None, input_shape=(32,), vocab_size=128,
                                         seed=seed)  # fmt: skip
    if arm != "random":  # vocabulary-bound tensors from the ancestry
        state, source = model.state_dict(), ancestry.state_dict()
        for name in HFCausalLM().inherited_names(model):
            state[name] = source[name].clone()
        model.load_state_dict(state)
    return model


def lora(model: torch.nn.Module) -> torch.nn.Module:
    from peft import LoraConfig, get_peft_model

    return get_peft_model(
        model, LoraConfig(r=8, lora_alpha=16, target_modules=LORA_TARGETS, lora_dropout=0.0)
    )


def fine_tune(model, seed: int, fraction: float, lr: float, epochs: int, out: Path) -> dict:
    """LoRA on `fraction` of the training sequences for the optimizer steps of `epochs` full-data epochs,
    evaluated once per full-data epoch's worth of steps; the validation curve, test loss and CPU seconds."""
    start = time.process_time()
    cfg = lm_config(seed, epochs, lr, "constant")
    run = experiment.prepare_run(cfg)
    steps_per_epoch = len(run.loaders[0])
    cfg.train = replace(cfg.train, max_steps=epochs * steps_per_epoch, eval_every=steps_per_epoch)
    n = len(run.splits.train)
    keep = np.sort(np.random.default_rng(seed).permutation(n)[: max(1, round(fraction * n))])
    splits = replace(run.splits, train=Subset(run.splits.train, keep.tolist()))
    run = experiment.Run(cfg, splits, build_dataloaders(splits, cfg.data, cfg.seed), run.task)
    test = experiment.train(cfg, out, model=lora(model), run=run)
    val = [r["loss"] for r in read_metrics(out / METRICS_NAME) if r["split"] == "val"]
    return {"test": test["loss"], "val": val, "cpu_s": time.process_time() - start}


CONTEXT: dict = {}  # what the forked workers share: ancestry, layers, arch, epochs, lrs, work dir, resumed runs


def fine_tune_key(key: tuple) -> dict:
    """One fine-tune (arm, fraction, lr, seed), unless a resumed bench already has it."""
    if key in CONTEXT["done"]:
        return CONTEXT["done"][key]
    arm, fraction, lr, seed = key
    model = arm_model(arm, CONTEXT["ancestry"], CONTEXT["layers"], CONTEXT["arch"], seed)
    return fine_tune(model, seed, fraction, lr, CONTEXT["epochs"], CONTEXT["work"] / "-".join(map(str, key)))


def converged(run: dict) -> float:
    return min(run["val"])


def sweep_key(key: tuple) -> tuple[tuple, dict]:
    """An arm's learning-rate sweep on full data for one seed, in a worker forked after the ancestry was built."""
    torch.set_num_threads(1)
    arm, seed = key
    result = sweep(
        lambda lr: fine_tune_key((arm, 1.0, lr, seed)), CONTEXT["lrs"], converged, higher_is_better=False
    )
    return key, {
        "best": result.best,
        "at_edge": result.at_edge,
        "lrs": list(result.results),
        "runs": result.results,
    }


def run_key(key: tuple) -> tuple[tuple, dict]:
    torch.set_num_threads(1)
    return key, fine_tune_key(key)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--fractions", default="0.1,0.25,0.5,0.75,1.0")
    parser.add_argument(
        "--lrs", default="1e-3,3e-3,1e-2", help="the sweep's starting grid (widened at an edge)"
    )
    parser.add_argument("--epochs", type=int, default=20, help="full-data epochs' worth of optimizer steps")
    parser.add_argument("--k", type=int, default=2)
    parser.add_argument(
        "--workers", type=int, default=1, help="sweeps/fine-tunes in parallel (one thread each)"
    )
    parser.add_argument("--json")
    parser.add_argument(
        "--resume", action="store_true", help="reuse the runs already in --json (same settings)"
    )
    parser.add_argument("--png", help="loss against epochs and against the data fraction, per arm")
    args = parser.parse_args()
    torch.set_num_threads(1)
    seeds = [int(s) for s in args.seeds.split(",")]
    fractions = sorted(float(f) for f in args.fractions.split(","))
    if fractions[-1] != 1.0 or fractions[0] <= 0:
        parser.error(
            "--fractions must lie in (0, 1] and include 1.0 (the learning rates are swept on full data)"
        )
    lrs = [float(x) for x in args.lrs.split(",")]
    load_start = os.getloadavg()[0]
    runs: dict[tuple, dict] = {}
    sweeps: dict[tuple, dict] = {}
    resumed = (
        json.loads(Path(args.json).read_text())
        if args.resume and args.json and Path(args.json).is_file()
        else {}
    )
    for key, value in resumed.get("runs", {}).items():
        arm, fraction, lr, seed = key.split("/")
        runs[(arm, float(fraction), float(lr), int(seed))] = value
    for key, value in resumed.get("sweeps", {}).items():
        arm, seed = key.split("/")
        sweeps[(arm, int(seed))] = value

    def save(record: dict | None = None) -> None:
        if args.json:  # after every sweep and run, so an interrupted bench keeps what it finished
            Path(args.json).write_text(
                json.dumps({**(record or {}), "layers": layers, **jsonable(runs, sweeps)}, indent=2)
            )

    def on_run(key: tuple, result: dict) -> None:
        print(*key, f"best val {converged(result):.3f}", flush=True)
        save()

    def on_sweep(key: tuple, result: dict) -> None:
        for lr, run in result.pop("runs").items():
            runs[(key[0], 1.0, lr, key[1])] = run
        print(
            *key,
            "best lr",
            result["best"],
            "of",
            result["lrs"],
            "(at the edge)" * result["at_edge"],
            flush=True,
        )
        save()

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        ancestry, layers, arch = ancestry_and_layers(work, args.k)
        print("learngene layers:", layers, flush=True)
        if resumed and resumed.get("layers") != layers:
            raise SystemExit(
                f"--resume: {args.json} was measured with learngene layers {resumed.get('layers')}, not {layers}"
            )
        CONTEXT.update(
            ancestry=ancestry, layers=layers, arch=arch, epochs=args.epochs, lrs=lrs, work=work, done=runs
        )
        run_missing(sweep_key, [(arm, s) for s in seeds for arm in ARMS], sweeps, args.workers, on_sweep)
        best = {key: sweep["best"] for key, sweep in sweeps.items()}
        run_missing(run_key, [(arm, f, best[(arm, s)], s) for s in seeds for f in fractions for arm in ARMS], runs,
                    args.workers, on_run)  # fmt: skip
    rows = summarise(runs, sweeps, seeds, fractions)
    cpu = sum(run["cpu_s"] for run in runs.values() if "cpu_s" in run)
    header = (
        f"{platform.machine()}, {os.cpu_count()} cores (shared, load average {load_start:.1f} at the start, "
        f"{os.getloadavg()[0]:.1f} at the end), 1 torch thread, torch {torch.__version__}; "
        f"{args.workers} worker(s); {args.epochs} full-data epochs of steps at constant lr, sweep from {lrs} per arm "
        f"and seed, seeds {seeds}, fractions {fractions}, learngene layers {layers}; "
        f"{len(runs)} fine-tunes, {cpu / 60:.0f} CPU minutes"
    )
    print(header)
    print(table(rows))
    print(fraction_table(rows, fractions))
    save({"setup": header, "rows": rows})
    if args.png:
        plot(rows, fractions, Path(args.png))


def jsonable(runs: dict, sweeps: dict) -> dict:
    """Runs keyed `arm/fraction/lr/seed`, sweeps keyed `arm/seed`."""
    return {
        "runs": {"/".join(map(str, k)): v for k, v in runs.items()},
        "sweeps": {"/".join(map(str, k)): v for k, v in sweeps.items()},
    }


def last_quarter_gain(run: dict) -> float:
    """How much the best validation loss still fell in the last quarter of the budget (0: it had plateaued)."""
    val = run["val"]
    return min(val[: len(val) * 3 // 4]) - min(val)


def mean_std(values: list[float]) -> tuple[float, float]:
    return statistics.mean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def summarise(runs: dict, sweeps: dict, seeds: list[int], fractions: list[float]) -> list[dict]:
    """Per arm, each seed at its own best rate: losses, plateau checks, epochs and data fraction to each target."""
    rows = []
    for arm in ARMS:
        lrs = [sweeps[(arm, s)]["best"] for s in seeds]
        by_fraction = {f: [runs[(arm, f, lr, s)] for lr, s in zip(lrs, seeds)] for f in fractions}
        full = by_fraction[1.0]
        row = {
            "arm": arm, "lrs": lrs, "lrs_at_sweep_edge": [sweeps[(arm, s)]["at_edge"] for s in seeds],
            "sweeps": {s: {f"{lr:g}": converged(runs[(arm, 1.0, lr, s)]) for lr in sweeps[(arm, s)]["lrs"]} for s in seeds},
            "best_vals": [converged(r) for r in full], "tests": [r["test"] for r in full],
            "last_quarter_gain": {f"{f:g}": [last_quarter_gain(r) for r in rs] for f, rs in by_fraction.items()},
            "best_val_by_fraction": {f"{f:g}": [converged(r) for r in rs] for f, rs in by_fraction.items()},
            "val_curves": [r["val"] for r in full],
        }  # fmt: skip
        row["best_val_mean"], row["best_val_std"] = mean_std(row["best_vals"])
        row["test_mean"], row["test_std"] = mean_std(row["tests"])
        for target in TARGETS:
            goals = [converged(runs[(target, 1.0, sweeps[(target, s)]["best"], s)]) for s in seeds]
            row[f"epochs_to_{target}_best"] = [
                next((i + 1 for i, v in enumerate(r["val"]) if v <= goal), None)
                for r, goal in zip(full, goals)
            ]
            row[f"fraction_for_{target}_best"] = [
                fraction_to_reach(
                    [(f, converged(by_fraction[f][i])) for f in fractions], goal, higher_is_better=False
                )
                for i, goal in enumerate(goals)
            ]
        rows.append(row)
    return rows


def cells(values: list, smallest: float | None = None) -> str:
    """Per-seed values; `-` never reached, `≤x` reached already at the smallest data fraction measured."""

    def cell(v) -> str:
        if v is None:
            return "-"
        return f"≤{v:g}" if v == smallest else f"{v:.2g}" if isinstance(v, float) else f"{v}"

    return ", ".join(cell(v) for v in values)


def table(rows: list[dict]) -> str:
    lines = [
        "| arm (LoRA r=8) | best lr per seed | best val loss (mean ± std) | test loss at the end | best-val gain in "
        "the last quarter (per seed) | epochs to random's best val loss | data fraction for it | epochs to whole's "
        "best val loss | data fraction for it |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lrs = ", ".join(f"{lr:g}" + " (edge)" * edge for lr, edge in zip(r["lrs"], r["lrs_at_sweep_edge"]))
        gain = ", ".join(f"{d:.3f}" for d in r["last_quarter_gain"]["1"])
        smallest = min(float(f) for f in r["best_val_by_fraction"])
        lines.append(
            f"| {r['arm']} | {lrs} | {r['best_val_mean']:.3f} ± {r['best_val_std']:.3f} "
            f"| {r['test_mean']:.3f} ± {r['test_std']:.3f} | {gain} "
            f"| {cells(r['epochs_to_random_best'])} | {cells(r['fraction_for_random_best'], smallest)} "
            f"| {cells(r['epochs_to_whole_best'])} | {cells(r['fraction_for_whole_best'], smallest)} |"
        )
    return "\n".join(lines)


def fraction_table(rows: list[dict], fractions: list[float]) -> str:
    """Best validation loss against the fraction of the training data (mean ± std over seeds)."""
    lines = [
        "| arm: best val loss at data fraction | " + " | ".join(f"{f:g}" for f in fractions) + " |",
        "|---|" + "---|" * len(fractions),
    ]
    for r in rows:
        means = [mean_std(r["best_val_by_fraction"][f"{f:g}"]) for f in fractions]
        lines.append(f"| {r['arm']} | " + " | ".join(f"{m:.3f} ± {s:.3f}" for m, s in means) + " |")
    return "\n".join(lines)


def plot(rows: list[dict], fractions: list[float], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (by_epoch, by_fraction) = plt.subplots(1, 2, figsize=(9, 3.6))
    for r in rows:
        curves = np.array(r["val_curves"])
        epochs = np.arange(1, curves.shape[1] + 1)
        (line,) = by_epoch.plot(epochs, curves.mean(0), label=r["arm"])
        by_epoch.fill_between(epochs, curves.min(0), curves.max(0), color=line.get_color(), alpha=0.2)
        means = [mean_std(r["best_val_by_fraction"][f"{f:g}"]) for f in fractions]
        by_fraction.errorbar(fractions, [m for m, _ in means], yerr=[s for _, s in means], marker="o", capsize=3,
                             color=line.get_color(), label=r["arm"])  # fmt: skip
    by_epoch.set_xlabel("epoch (full data)")
    by_epoch.set_ylabel("validation loss (mean, min-max over seeds)")
    by_fraction.set_xlabel("fraction of the training data (same optimizer steps)")
    by_fraction.set_ylabel("best validation loss (mean ± std)")
    by_fraction.set_xticks(fractions, [f"{f:g}" for f in fractions])
    for ax in (by_epoch, by_fraction):
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


if __name__ == "__main__":
    main()
