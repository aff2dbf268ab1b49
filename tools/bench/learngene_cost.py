"""What TLEG and SWS learngenes save against a tuned scratch baseline, with every cost charged, over seeds.

    python tools/bench/learngene_cost.py [--seeds 0,1,2] [--depths 2,4,6] [--settings transfer,same-task]
        [--workers 3] [--json out.json]   (each finished seed: out.json.seed<N>.json; --from-json reports them)

Two settings on scikit-learn's digits (16x16, ViTs of width 64, 4 heads, patch 4):
  same-task  the papers' ImageNet setting: the ancestry (a 6-layer ViT, not charged) learns all 10 classes
             from 50 images each (--per-class); the TLEG and SWS aux nets are distilled from it on the same images
             (charged: their steps, with the ancestry's forward); descendants train on them again (the aux head
             is copied, as the reference does). Validation split 20% (359 images), evaluated every 8 steps.
  transfer   today's low-data setting: ancestry and aux nets on digits 0-4; descendants learn digits 5-9
             from 20 images per class; validation 20% of the 5-9 images, evaluated every 4 steps (an epoch).
In both, scratch descendants of every depth get a learning-rate sweep (--lrs, extended one grid step past an edge
while the best rate sits there, up to --max-extensions points: learngene_core.sweep) and a budget 4x a base one
(transfer: 40 epochs = 160 steps, 4x the preset's 10; same-task: 20 epochs = 160 steps, 4x 5 epochs), cosine to
zero; learngene descendants get the same budget and schedule at the preset's learning rate (1e-3, untuned). Scratch's plateau = the mean val accuracy of its last quarter of evaluations at
its best rate; the table gives the steps each run needs to first reach it, their ratio (learngene / scratch),
and FLOP cost ratios: descendants only, and total (aux distillation + all descendants) over scratch's.
Each figure is the mean and standard deviation over seeds (each seed: its own data split, ancestry, aux nets
and initialisations); a ratio is only averaged over seeds where the plateau was reached (n/3 shows how many).
The storage table counts parameters (meta device, no memory) of separately trained models over the learngene.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from functools import partial
from pathlib import Path

SETTINGS = {
    # name: (descendant data overrides, ancestry/extraction data overrides, eval every N steps, batch, epochs)
    # epochs = 4x a base budget: the transfer preset's 10 epochs (4 steps each); 5 epochs (8 steps) same-task
    "transfer": ([], [], 4, 25, 40),
    "same-task": (
        ["data.classes=null", "data.samples_per_class={per_class}", "data.batch_size=64"],
        ["data.classes=null", "data.samples_per_class={per_class}"],
        8,
        64,
        20,
    ),
}
SPLIT = ["data.options.val_fraction=0.2", "data.options.test_fraction=0.2"]
QUIET = ["train.progress=false"]


def _threads() -> None:
    import torch

    torch.set_num_threads(1)


def curve_of(run_dir: Path) -> list[tuple[int, float]]:
    from learngene_core.metrics import METRICS_NAME, read_metrics

    return [(r["step"], r["accuracy"]) for r in read_metrics(run_dir / METRICS_NAME) if r["split"] == "val"]


def train_scratch(work: Path, run, overrides: list[str], learngene, depth: int, example, batch: int,
                  lr: float) -> dict:  # fmt: skip
    """One scratch descendant of `depth` layers at learning rate `lr`: its val curve, plateau, test accuracy."""
    from learngene_core import experiment
    from learngene_core.config import load_config
    from learngene_core.learngene import DescendantConfig, build_descendant
    from learngene_core.learngene.cost import forward_flops, plateau, step_flops
    from tleg import TLEG

    cfg = load_config("tiny-descendant", [*overrides, f"train.lr={lr}"], DescendantConfig, "tleg.configs")
    model, _ = build_descendant("scratch", learngene, TLEG(), list(range(depth)), run)
    run_dir = work / f"scratch-d{depth}-lr{lr}"
    test = experiment.train(cfg, run_dir, model=model, run=run)
    curve = curve_of(run_dir)
    return {"curve": curve, "plateau": plateau(curve), "test": test["accuracy"],
            "flops_per_step": step_flops(forward_flops(model, example), batch)}  # fmt: skip


def run_seed(
    seed: int,
    depths: list[int],
    lrs: list[float],
    settings: list[str],
    smoke: bool = False,
    max_extensions: int = 2,
    per_class: int = 50,
) -> dict:
    """Everything of one seed: per setting, the aux nets, scratch's sweep and the learngene descendants."""
    _threads()
    from learngene_core import experiment
    from learngene_core.config import ExperimentConfig, load_config
    from learngene_core.learngene import (
        DescendantConfig,
        ExtractConfig,
        Learngene,
        build_descendant,
        expand,
        extract,
    )
    from learngene_core.learngene.cost import forward_flops, step_flops, steps_to_reach
    from learngene_core.learngene.extract import load_ancestry
    from learngene_core.sweep import sweep
    from sws import SWS
    from tleg import TLEG

    methods = {"tleg": (TLEG(), "tleg.configs"), "sws": (SWS(), "sws.configs")}
    out: dict = {"seed": seed}
    with tempfile.TemporaryDirectory() as tmp:
        for setting in settings:
            desc_data, extract_data, eval_every, batch, epochs = SETTINGS[setting]
            desc_data, extract_data = (
                [o.format(per_class=per_class) for o in overrides] for overrides in (desc_data, extract_data)
            )
            epochs = 1 if smoke else epochs
            prepare = ["train.epochs=1"] if smoke else []  # ancestry and aux nets: their presets' epochs
            work = Path(tmp) / setting
            common = [*QUIET, f"seed={seed}"]
            ancestry_dir = work / "ancestry"
            experiment.train(
                load_config("digits-ancestry", [*common, *extract_data, *SPLIT, *prepare], ExperimentConfig),
                ancestry_dir,
            )
            cfg0 = load_config(
                "tiny-descendant", [*common, *desc_data, *SPLIT], DescendantConfig, "tleg.configs"
            )
            run = experiment.prepare_run(cfg0)
            steps_per_epoch = math.ceil(len(run.splits.train) / batch)
            max_steps = epochs * steps_per_epoch
            schedule = [f"train.max_steps={max_steps}", f"train.eval_every={eval_every}",
                        f"train.checkpoint_every={max_steps}"]  # fmt: skip
            example = run.splits.train[0][0][None]
            result: dict = {
                "max_steps": max_steps,
                "epochs": epochs,
                "batch_size": batch,
                "train_images": len(run.splits.train),
            }
            learngenes, aux = {}, {}
            for name, (method, package) in methods.items():
                cfg = load_config(
                    "tiny",
                    [*common, *extract_data, *SPLIT, *prepare, f"ancestry.run={ancestry_dir}"],
                    ExtractConfig,
                    package,
                )
                learngene, metrics = extract(method, cfg, work / f"{name}-lg")
                learngenes[name] = Learngene.load(work / f"{name}-lg")
                teacher, _ = load_ancestry(cfg.ancestry, None, run.splits.input_shape)
                aux_model, _ = expand(learngene, method, method.aux_layout(learngene.spec), load_head=True)
                aux_steps = curve_of(work / f"{name}-lg" / "aux-run")[-1][0]
                aux_step_cost = step_flops(
                    forward_flops(aux_model, example), cfg.data.batch_size, forward_flops(teacher, example)
                )
                aux[name] = {"steps": aux_steps, "flops": aux_steps * aux_step_cost,
                             "test_accuracy": metrics["accuracy"]}  # fmt: skip
            result["aux"] = aux
            per_depth: dict = {}
            for depth in depths:
                scratch_run = partial(train_scratch, work, run, [*common, *desc_data, *SPLIT, *schedule],
                                      learngenes["tleg"], depth, example, batch)  # fmt: skip
                tuned = sweep(scratch_run, lrs, score=lambda r: r["plateau"], max_extensions=max_extensions)
                scratch_runs, best_lr = tuned.results, tuned.best
                best = scratch_runs[best_lr]
                target = best["plateau"]
                flops_per_step = best["flops_per_step"]
                row = {
                    "scratch": {
                        "best_lr": best_lr,
                        "plateau": target,
                        "plateau_by_lr": {str(lr): r["plateau"] for lr, r in scratch_runs.items()},
                        "best_at_edge": tuned.at_edge,
                        "steps": steps_to_reach(best["curve"], target),
                        "test": best["test"],
                        "curve": best["curve"],
                    },
                    "flops_per_step": flops_per_step,
                }
                cfg = load_config("tiny-descendant", [*common, *desc_data, *SPLIT, *schedule], DescendantConfig,
                                  "tleg.configs")  # fmt: skip
                for name, (method, _) in methods.items():
                    model, how = build_descendant(
                        "learngene",
                        learngenes[name],
                        method,
                        method.default_layout(depth, learngenes[name].spec),
                        run,
                    )
                    run_dir = work / f"{name}-d{depth}"
                    test = experiment.train(cfg, run_dir, model=model, run=run)
                    curve = curve_of(run_dir)
                    row[name] = {"steps": steps_to_reach(curve, target), "test": test["accuracy"], "curve": curve,
                                 "first_eval": curve[0][1], "head": "copied" if "fresh" not in how else "fresh"}  # fmt: skip
                per_depth[str(depth)] = row
                print(f"seed {seed} {setting} depth {depth}: scratch lr {best_lr} plateau {target:.3f} at step "
                      f"{row['scratch']['steps']}; tleg {row['tleg']['steps']}, sws {row['sws']['steps']}", flush=True)  # fmt: skip
            result["depths"] = per_depth
            out[setting] = result
    return out


def best_lrs_of(scratches: list[dict]) -> str:
    """Scratch's best rate per seed (`*`: still at an edge of its sweep) and the range the sweeps tried."""
    tried = [float(lr) for scratch in scratches for lr in scratch["plateau_by_lr"]]
    best = ", ".join(f"{s['best_lr']:g}{'*' if s.get('best_at_edge') else ''}" for s in scratches)
    return f"{best} (tried {min(tried):g}..{max(tried):g})"


def ratios_of(result: dict, name: str, depths: list[int]):
    """Per depth steps ratio, and the cost ratios (descendants only, total) of one method in one seed's setting."""
    from learngene_core.learngene.cost import cost_ratios

    rows = result["depths"]
    per_depth = {}
    for d in depths:
        lg, sc = rows[str(d)][name]["steps"], rows[str(d)]["scratch"]["steps"]
        per_depth[d] = None if lg is None else lg / sc
    learngene_cost = {
        d: None
        if rows[str(d)][name]["steps"] is None
        else rows[str(d)][name]["steps"] * rows[str(d)]["flops_per_step"]
        for d in depths
    }
    scratch_cost = {d: rows[str(d)]["scratch"]["steps"] * rows[str(d)]["flops_per_step"] for d in depths}
    return per_depth, cost_ratios(learngene_cost, scratch_cost, result["aux"][name]["flops"])


def mean_spread(values: list[float | None]) -> str:
    reached = [v for v in values if v is not None]
    if not reached:
        return f"not reached (0/{len(values)})"
    spread = statistics.stdev(reached) if len(reached) > 1 else 0.0
    shown = f"{statistics.mean(reached):.2f} ± {spread:.2f}"
    return shown if len(reached) == len(values) else f"{shown} ({len(reached)}/{len(values)} reached)"


def report(results: list[dict], depths: list[int], settings: list[str]) -> dict:
    summary: dict = {}
    for setting in settings:
        seeds = [r[setting] for r in results]
        print(f"\n### {setting}: {seeds[0]['train_images']} training images, batch {seeds[0]['batch_size']}, "
              f"{seeds[0]['max_steps']} steps ({seeds[0]['epochs']} epochs) for every run; {len(seeds)} seeds\n")  # fmt: skip
        print("| depth | scratch best lr (per seed) | scratch plateau (val acc) | scratch steps to plateau "
              "| method | steps to scratch's plateau | steps ratio (learngene / scratch) | val acc at first eval "
              "(learngene / scratch) | final test acc (learngene / scratch) |")  # fmt: skip
        print("|---|---|---|---|---|---|---|---|---|")
        at_edge = any(s["depths"][str(d)]["scratch"].get("best_at_edge") for s in seeds for d in depths)
        block: dict = {"depths": {}, "methods": {}}
        for d in depths:
            rows = [s["depths"][str(d)] for s in seeds]
            sc_steps = [r["scratch"]["steps"] for r in rows]
            for name in ("tleg", "sws"):
                steps = [r[name]["steps"] for r in rows]
                ratio = [None if s is None else s / c for s, c in zip(steps, sc_steps)]
                first = statistics.mean(r[name]["first_eval"] for r in rows)
                first_sc = statistics.mean(r["scratch"]["curve"][0][1] for r in rows)
                print(f"| {d} | {best_lrs_of([r['scratch'] for r in rows])} "
                      f"| {mean_spread([r['scratch']['plateau'] for r in rows])} | {mean_spread(sc_steps)} "
                      f"| {name} | {mean_spread(steps)} | {mean_spread(ratio)} | {first:.3f} / {first_sc:.3f} "
                      f"| {mean_spread([r[name]['test'] for r in rows])} / "
                      f"{mean_spread([r['scratch']['test'] for r in rows])} |")  # fmt: skip
                block["depths"].setdefault(str(d), {})[name] = {"steps_ratio": ratio, "steps": steps}
            block["depths"][str(d)]["scratch_steps"] = sc_steps
        if at_edge:
            print("\n*: scratch's best rate is still at an edge of the rates its sweep tried")
        print("\n| method | aux steps | aux cost / scratch's (all depths) | cost ratio, descendants only "
              "| cost ratio, total (aux + descendants) |")  # fmt: skip
        print("|---|---|---|---|---|")
        for name in ("tleg", "sws"):
            pairs = [ratios_of(s, name, depths) for s in seeds]
            aux_share = [
                s["aux"][name]["flops"]
                / sum(
                    s["depths"][str(d)]["scratch"]["steps"] * s["depths"][str(d)]["flops_per_step"]
                    for d in depths
                )
                for s in seeds
            ]
            only = [p[1].descendants for p in pairs]
            total = [p[1].total for p in pairs]
            print(f"| {name} | {seeds[0]['aux'][name]['steps']} | {mean_spread(aux_share)} | {mean_spread(only)} "
                  f"| {mean_spread(total)} |")  # fmt: skip
            block["methods"][name] = {"descendants_ratio": only, "total_ratio": total, "aux_share": aux_share}
        summary[setting] = block
    return summary


def storage_table(depths: list[int]) -> list[dict]:
    """Parameters of separately trained models at the given depths over the learngene's, at several widths."""
    import timm
    import torch

    from learngene_core.learngene import VIT_NAME, AuxNet, backbone_of
    from learngene_core.models import count_parameters
    from sws import SWS
    from tleg import TLEG

    widths = {
        "DeiT-S (384, 6 heads, 224 px, 1000 classes)": dict(embed_dim=384, num_heads=6, num_classes=1000),
        "DeiT-B (768, 12 heads, 224 px, 1000 classes)": dict(embed_dim=768, num_heads=12, num_classes=1000),
        "this bench (64, 4 heads, 16 px, 10 classes)": dict(
            embed_dim=64, num_heads=4, mlp_ratio=2.0, img_size=16, patch_size=4, in_chans=1, num_classes=10
        ),
    }
    paper = {"tleg": (TLEG(), {"aux_depth": 12}), "sws": (SWS(), {"stages": [3, 3, 4, 3, 3]})}
    tiny = {"tleg": (TLEG(), {"aux_depth": 6}), "sws": (SWS(), {"stages": [2, 2, 2]})}  # the tiny presets
    depth_sets = {"paper (3..12)": list(range(3, 13)), f"bench ({','.join(map(str, depths))})": depths}
    rows = []
    with torch.device("meta"):
        for width, kwargs in widths.items():
            base = {"class_token": False, "global_pool": "avg", **kwargs}
            models = {d: count_parameters(timm.create_model(VIT_NAME, depth=d, **base)) for d in range(1, 13)}
            for name, (method, spec) in (tiny if "bench" in width else paper).items():
                template = timm.create_model(VIT_NAME, depth=len(method.aux_layout(spec)), **base)
                aux = AuxNet(template, method, spec)
                inherited = backbone_of(template).inherited_names(template)
                head = sum(p.numel() for p in template.get_classifier().parameters())
                state = template.state_dict()
                stored = sum(t.numel() for t in aux.learngene.values()) + sum(
                    state[n].numel() for n in inherited
                )
                for label, ds in depth_sets.items():
                    separate = sum(models[d] for d in ds)
                    rows.append({"width": width, "method": name, "depths": label, "models": separate,
                                 "learngene": stored + head, "ratio": separate / (stored + head)})  # fmt: skip
    print("\n| width | depths | parameters of separate models | method | learngene (+ its head) | ratio |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['width']} | {r['depths']} | {r['models']:,} | {r['method']} | {r['learngene']:,} | "
              f"{r['ratio']:.1f}x |")  # fmt: skip
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--depths", default="2,4,6")
    parser.add_argument("--lrs", default="1e-3,3e-3,1e-2", help="scratch's learning-rate grid")
    parser.add_argument(
        "--max-extensions",
        type=int,
        default=2,
        help="points the sweep may add past an edge of the grid while its best rate is there",
    )
    parser.add_argument("--settings", default="transfer,same-task")
    parser.add_argument(
        "--per-class", type=int, default=50, help="same-task training images per class (at most about 108)"
    )
    parser.add_argument("--workers", type=int, default=1, help="seeds run in parallel (each on one thread)")
    parser.add_argument(
        "--smoke", action="store_true", help="one epoch everywhere: checks the script end to end"
    )
    parser.add_argument("--json", help="also write every curve and figure to this JSON file")
    parser.add_argument("--from-json", nargs="+", help="report these per-seed JSON files instead of running")
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    seeds = [int(s) for s in args.seeds.split(",")]
    depths = [int(d) for d in args.depths.split(",")]
    lrs = [float(x) for x in args.lrs.split(",")]
    settings = [s for s in args.settings.split(",") if s]
    unknown = [s for s in settings if s not in SETTINGS]
    if unknown:
        parser.error(f"unknown setting {unknown[0]}; choose from {', '.join(SETTINGS)}")
    start = time.perf_counter()
    if args.from_json:  # report seeds saved by earlier runs (each run writes <json>.seed<N>.json per seed)
        results = [json.loads(Path(p).read_text()) for p in args.from_json]
    else:
        results = []
        with ProcessPoolExecutor(args.workers) as pool:
            jobs = [
                pool.submit(
                    run_seed, seed, depths, lrs, settings, args.smoke, args.max_extensions, args.per_class
                )
                for seed in seeds
            ]
            for job in as_completed(jobs):
                results.append(job.result())
                if args.json:
                    seed = results[-1]["seed"]
                    Path(f"{args.json}.seed{seed}.json").write_text(json.dumps(results[-1]))
        results.sort(key=lambda r: r["seed"])
    _threads()
    import torch

    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"\n{platform.machine()}, {os.cpu_count()} cores, 1 torch thread per run, {args.workers} worker(s), "
          f"load average {load:.1f} at the end; torch {torch.__version__}; {time.perf_counter() - start:.0f} s")  # fmt: skip
    summary = report(results, depths, settings)
    storage = storage_table(depths)
    if args.json:
        Path(args.json).write_text(json.dumps({"seeds": results, "summary": summary, "storage": storage,
                                                "depths": depths, "lrs": lrs}, indent=1))  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())
