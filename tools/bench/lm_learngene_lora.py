"""The seed's language-model claim at small scale: LoRA on learngene-initialised tiny Llamas against plain LoRA.

    python tools/bench/lm_learngene_lora.py [--seeds 0,1,2] [--fractions 0.5,1.0]
                                            [--lrs 1e-3,3e-3,1e-2] [--epochs 20] [--workers 1] [--json out.json]

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
schedule's; the last-quarter drop of the validation loss shows whether the budget reached it. Reported: final
test loss; epochs until the validation loss reaches plain LoRA's (random's) final one and whole's final one; the
smallest data fraction (same epochs, so fewer steps) whose final validation loss is at least that good. Every arm
gets the same learning-rate sweep on full data and keeps the rate with the lowest mean final validation loss.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
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
from learngene_core.learngene.extract import load_ancestry
from learngene_core.learngene.inherit import build_layer_descendant, make_layer_learngene
from learngene_core.metrics import METRICS_NAME, read_metrics

ARMS = ("heur", "auto", "whole", "random")
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
    import copy

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
    cfg = lm_config(seed, epochs, lr, "constant")
    cfg.train.best_metric, cfg.train.best_mode = "loss", "min"
    run = experiment.prepare_run(cfg)
    n = len(run.splits.train)
    keep = np.sort(np.random.default_rng(seed).permutation(n)[: max(1, round(fraction * n))])
    splits = replace(run.splits, train=Subset(run.splits.train, keep.tolist()))
    run = experiment.Run(cfg, splits, build_dataloaders(splits, cfg.data, cfg.seed), run.task)
    test = experiment.train(cfg, out, model=lora(model), run=run)
    val = [r["loss"] for r in read_metrics(out / METRICS_NAME) if r["split"] == "val"]
    return {"test": test["loss"], "val": val}


CONTEXT: dict = {}  # what the forked workers share: ancestry, layers, arch, epochs, work dir


def run_key(key: tuple) -> tuple[tuple, dict]:
    """One fine-tune (arm, fraction, lr, seed), in a worker forked after the ancestry was built."""
    torch.set_num_threads(1)
    arm, fraction, lr, seed = key
    model = arm_model(arm, CONTEXT["ancestry"], CONTEXT["layers"], CONTEXT["arch"], seed)
    out = CONTEXT["work"] / "-".join(map(str, key))
    return key, fine_tune(model, seed, fraction, lr, CONTEXT["epochs"], out)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--fractions", default="0.5,1.0")
    parser.add_argument("--lrs", default="1e-3,3e-3,1e-2")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--k", type=int, default=2)
    parser.add_argument(
        "--sweep-seeds", type=int, default=1, help="seeds the learning-rate sweep averages over"
    )
    parser.add_argument("--workers", type=int, default=1, help="fine-tunes run in parallel (one thread each)")
    parser.add_argument("--json")
    args = parser.parse_args()
    torch.set_num_threads(1)
    seeds = [int(s) for s in args.seeds.split(",")]
    fractions = sorted(float(f) for f in args.fractions.split(","))
    if fractions[-1] != 1.0:
        parser.error("--fractions must include 1.0 (the learning rates are swept on full data)")
    lrs = [float(x) for x in args.lrs.split(",")]
    runs: dict[tuple, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        ancestry, layers, arch = ancestry_and_layers(work, args.k)
        print("learngene layers:", layers, flush=True)

        CONTEXT.update(ancestry=ancestry, layers=layers, arch=arch, epochs=args.epochs, work=work)

        def record(key: tuple, result: dict) -> None:
            print(*key, f"{result['test']:.3f}", flush=True)
            if args.json:  # partial results survive an interrupted bench
                save(args.json, {"runs": runs})

        def run_all(keys: list[tuple]) -> None:  # (arm, fraction, lr, seed) fine-tunes
            run_missing(run_key, keys, runs, args.workers, record)

        def best_rates(lrs: list[float]) -> dict[str, float]:
            sweep = seeds[: args.sweep_seeds]
            run_all([(arm, 1.0, lr, s) for arm in ARMS for lr in lrs for s in sweep])
            return {
                arm: min(lrs, key=lambda lr, arm=arm: statistics.mean(min(runs[(arm, 1.0, lr, s)]["val"]) for s in sweep))
                for arm in ARMS
            }  # fmt: skip

        for _ in range(3):  # widen the sweep (for every arm alike) while an arm's best rate is at its edge
            best = best_rates(lrs)
            edges = {lr for lr in best.values() if lr in (min(lrs), max(lrs))}
            if not edges:
                break
            lrs = sorted({*lrs, *(lr * 3 if lr == max(lrs) else lr / 3 for lr in edges)})
            print("a best rate is at the sweep's edge; sweeping", lrs, flush=True)
        best = best_rates(lrs)
        run_all([(arm, f, best[arm], s) for arm in ARMS for f in fractions for s in seeds])
    rows = summarise(runs, best, seeds, fractions, lrs)
    header = (
        f"{platform.machine()}, {os.cpu_count()} cores (shared, loaded), 1 torch thread, torch {torch.__version__}; "
        f"{args.workers} worker(s); {args.epochs} epochs at constant lr, lrs {lrs} (swept on seeds {seeds[: args.sweep_seeds]}), seeds {seeds}, "
        f"fractions {fractions}, "
        f"learngene layers {layers}"
    )
    print(header)
    print(table(rows))
    if args.json:
        save(args.json, {"setup": header, "rows": rows, "runs": runs})


def save(path: str, record: dict) -> None:
    """`record` as JSON, the runs keyed `arm/fraction/lr/seed`."""
    runs = {"/".join(map(str, k)): v for k, v in record["runs"].items()}
    Path(path).write_text(json.dumps({**record, "runs": runs}, indent=2))


def summarise(
    runs: dict, best: dict, seeds: list[int], fractions: list[float], lrs: list[float]
) -> list[dict]:
    """Per arm at its best rate: test loss, last-quarter drop, epochs and data fraction to reach each target."""
    rows = []
    for arm in ARMS:
        full = [runs[(arm, 1.0, best[arm], s)] for s in seeds]
        row = {
            "arm": arm, "lr": best[arm], "lr_at_sweep_edge": best[arm] in (min(lrs), max(lrs)),
            "sweep_best_val": {f"{lr:g}": min(runs[(arm, 1.0, lr, seeds[0])]["val"]) for lr in lrs},
            "best_vals": [min(r["val"]) for r in full],
            "tests": [r["test"] for r in full],
            "last_quarter_gain": [min(r["val"][: len(r["val"]) * 3 // 4]) - min(r["val"]) for r in full],
        }  # fmt: skip
        row["test_mean"] = statistics.mean(row["tests"])
        row["test_std"] = statistics.stdev(row["tests"]) if len(seeds) > 1 else 0.0
        row["best_val_mean"] = statistics.mean(row["best_vals"])
        row["best_val_std"] = statistics.stdev(row["best_vals"]) if len(seeds) > 1 else 0.0
        for target_arm in ("random", "whole"):
            targets = [min(runs[(target_arm, 1.0, best[target_arm], s)]["val"]) for s in seeds]
            row[f"epochs_to_{target_arm}_best"] = [
                next((i + 1 for i, v in enumerate(r["val"]) if v <= t), None) for r, t in zip(full, targets)
            ]
            row[f"fraction_for_{target_arm}_best"] = [
                min((f for f in fractions if min(runs[(arm, f, best[arm], s)]["val"]) <= t), default=None)
                for s, t in zip(seeds, targets)
            ]
        rows.append(row)
    return rows


def table(rows: list[dict]) -> str:
    def cells(values: list) -> str:
        return ", ".join("-" if v is None else f"{v:g}" for v in values)

    lines = [
        "| arm (LoRA r=8) | best lr | best val loss (mean ± std) | test loss at the end | best-val gain in the last "
        "quarter (per seed) | epochs to random's best val loss | data fraction for it | epochs to whole's best val "
        "loss | data fraction for it |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        edge = " (sweep edge)" if r["lr_at_sweep_edge"] else ""
        gain = ", ".join(f"{d:.3f}" for d in r["last_quarter_gain"])
        lines.append(
            f"| {r['arm']} | {r['lr']:g}{edge} | {r['best_val_mean']:.3f} ± {r['best_val_std']:.3f} "
            f"| {r['test_mean']:.3f} ± {r['test_std']:.3f} | {gain} "
            f"| {cells(r['epochs_to_random_best'])} | {cells(r['fraction_for_random_best'])} "
            f"| {cells(r['epochs_to_whole_best'])} | {cells(r['fraction_for_whole_best'])} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
