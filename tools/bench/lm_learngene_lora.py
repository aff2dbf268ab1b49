"""The seed's language-model claim at small scale: LoRA on learngene-initialised tiny Llamas against plain LoRA.

    python tools/bench/lm_learngene_lora.py [--seeds 0,1,2] [--fractions 0.25,0.5,1.0] [--lrs 1e-3,3e-3]
                                            [--epochs 8] [--json out.json]

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
- arms, each with LoRA (peft, r=8 on every attention and MLP projection): heur, auto, `whole` (LoRA on the
  ancestry itself: "vanilla LoRA" of the claim) and `random` (LoRA on a randomly initialised model of that shape).
Reported: final test loss; epochs until the validation loss reaches whole's final one ("epochs to converge" as
the claim plots it); the smallest data fraction at which an arm's final validation loss is at least as good as
whole's with all the data. Each arm's learning rate is picked from `lrs` on full data by mean validation loss.
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


def lm_config(seed: int, epochs: int, lr: float = 3e-3) -> ExperimentConfig:
    overrides = ["model.kwargs.num_hidden_layers=4", f"seed={seed}", f"train.epochs={epochs}", f"train.lr={lr}",
                 "train.progress=false", f"train.checkpoint_every={10**6}"]  # fmt: skip
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
    cfg = lm_config(seed, epochs, lr)
    cfg.train.best_metric, cfg.train.best_mode = "loss", "min"
    run = experiment.prepare_run(cfg)
    n = len(run.splits.train)
    keep = np.sort(np.random.default_rng(seed).permutation(n)[: max(1, round(fraction * n))])
    splits = replace(run.splits, train=Subset(run.splits.train, keep.tolist()))
    run = experiment.Run(cfg, splits, build_dataloaders(splits, cfg.data, cfg.seed), run.task)
    test = experiment.train(cfg, out, model=lora(model), run=run)
    val = [r["loss"] for r in read_metrics(out / METRICS_NAME) if r["split"] == "val"]
    return {"test": test["loss"], "val": val}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--fractions", default="0.25,0.5,1.0")
    parser.add_argument("--lrs", default="1e-3,3e-3")
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--k", type=int, default=2)
    parser.add_argument("--json")
    args = parser.parse_args()
    torch.set_num_threads(1)
    seeds = [int(s) for s in args.seeds.split(",")]
    fractions = sorted(float(f) for f in args.fractions.split(","))
    lrs = [float(x) for x in args.lrs.split(",")]
    runs: dict[tuple, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        ancestry, layers, arch = ancestry_and_layers(work, args.k)
        print("learngene layers:", layers, flush=True)

        def run(arm, fraction, lr, seed):
            key = (arm, fraction, lr, seed)
            if key not in runs:
                model = arm_model(arm, ancestry, layers, arch, seed)
                runs[key] = fine_tune(model, seed, fraction, lr, args.epochs, work / "-".join(map(str, key)))
                print(*key, f"{runs[key]['test']:.3f}", flush=True)
            return runs[key]

        best = {}
        for arm in ARMS:
            best[arm] = min(
                lrs, key=lambda lr: statistics.mean(run(arm, 1.0, lr, s)["val"][-1] for s in seeds)
            )
        for arm in ARMS:
            for fraction in fractions:
                for s in seeds:
                    run(arm, fraction, best[arm], s)
    rows = []
    for arm in ARMS:
        full = [runs[(arm, 1.0, best[arm], s)] for s in seeds]
        target = [runs[("whole", 1.0, best["whole"], s)]["val"][-1] for s in seeds]
        reach = [next((i + 1 for i, v in enumerate(r["val"]) if v <= t), None) for r, t in zip(full, target)]
        data = []
        for s, t in zip(seeds, target):
            ok = [f for f in fractions if runs[(arm, f, best[arm], s)]["val"][-1] <= t]
            data.append(min(ok) if ok else None)
        tests = [r["test"] for r in full]
        rows.append({"arm": arm, "lr": best[arm], "test_mean": statistics.mean(tests),
                     "test_std": statistics.stdev(tests) if len(tests) > 1 else 0.0,
                     "epochs_to_whole_final": reach, "fraction_for_whole_final": data})  # fmt: skip
    header = (
        f"{platform.machine()}, {os.cpu_count()} cores (shared, loaded), 1 torch thread, torch {torch.__version__}; "
        f"{args.epochs} epochs, lrs {lrs}, seeds {seeds}, fractions {fractions}, learngene layers {layers}"
    )
    print(header)
    print("| arm (LoRA r=8) | best lr | test loss, full data (mean ± std) | epochs to whole's final val loss "
          "(per seed) | smallest data fraction reaching it (per seed) |")  # fmt: skip
    print("|---|---|---|---|---|")
    for r in rows:
        reach = ", ".join("-" if e is None else str(e) for e in r["epochs_to_whole_final"])
        data = ", ".join("-" if f is None else f"{f:g}" for f in r["fraction_for_whole_final"])
        print(f"| {r['arm']} | {r['lr']:g} | {r['test_mean']:.3f} ± {r['test_std']:.3f} | {reach} | {data} |")
    if args.json:
        Path(args.json).write_text(json.dumps({"setup": header, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
