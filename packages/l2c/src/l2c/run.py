"""The verbs on a run directory: train-selector, train-experts, eval --topk K, and run (all three + baselines).

    <run>/config.yaml   split.json (class order, tasks, per-task sample hashes)
    <run>/selector/     task_<t>/ (Trainer output), after_task_<t>.safetensors, stats_*, accuracy.json/.png
    <run>/experts/      config.yaml, task_<t>/, expert_<t>.safetensors, head_after_task_<t>.safetensors, stats_*
    <run>/eval/top<k>/  accuracy.json/.png (L2C top-k) and top1_accuracy.json/.png (hard selection)
    <run>/baselines/    sequential/ (task_<t>/, after_task_<t>.safetensors), joint/; accuracy.json/.png each
    <run>/results.json, results.md (the table), parameters.md
Every check that can fail runs before anything is written, so a refused command leaves the directory as it was.
A stopped command continues with `--resume` (each stage goes on after its last finished task, mid-task from the
Trainer's checkpoint); one that stopped before its first checkpoint may also simply be run again in place.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from functools import partial
from pathlib import Path

import torch

from learngene_core.checkpoint import atomic_write_text, load_weights
from learngene_core.config import read_yaml_file, save_config, to_dict
from learngene_core.continual import (
    AccuracyMatrix,
    accuracy_per_task,
    check_manifest,
    load_split,
    save_manifest,
    task_identity_accuracy,
    task_recall_at_k,
)
from learngene_core.errors import CheckpointError, ConfigError
from learngene_core.experiment import check_output_dir

from . import stages
from .aggregate import TopKPredictor, expert_name
from .classifier import new_head
from .config import L2CConfig, load_l2c_config
from .context import Context, build_context
from .protocol import format_parameter_table, overlap_warning, parameter_table

CONFIG, SPLIT = "config.yaml", "split.json"
RUN_ENTRIES = {CONFIG, SPLIT, "selector", "experts", "baselines", "eval"}  # what a stopped run may hold
SHARED = ("model", "pretraining", "data", "scenario", "selector", "seed")  # what both stages must agree on
Log = Callable[[str], None]


def _warn(line: str) -> None:
    print(line, file=sys.stderr)


def _save_matrix(matrix: AccuracyMatrix, folder: Path, name: str, title: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    matrix.save_json(folder / f"{name}.json")
    matrix.plot(folder / f"{name}.png", title=title)


def start_run(cfg: L2CConfig, out: Path, log: Log, topk: int | None = None, resume: bool = False) -> Context:
    """Check `out` (new, a stopped run to continue with `resume`, or one with no checkpoint yet, started over),
    build data and backbone, warn about pre-training overlap, write config + split (kept when continuing)."""
    continuing = resume and (out / SPLIT).is_file()
    if out.exists() and not out.is_dir():
        raise CheckpointError(f"output dir {out} is a file, not a directory; choose another --output-dir")
    if resume:
        check_output_dir(out, cfg, resume=True)  # the run's own config, or nothing written yet
    elif out.is_dir() and any(out.iterdir()) and not stopped_before_first_checkpoint(out, cfg):
        raise CheckpointError(
            f"output dir {out} is not empty; pass --resume to continue its run or choose another --output-dir"
        )
    ctx = _open(out, cfg) if continuing else build_context(cfg)
    if topk is not None:
        _check_topk(topk, ctx.split.num_tasks, "tasks in the split")
    warning = overlap_warning(cfg, ctx.split.order)
    if warning:
        _warn(warning)
    if continuing:
        log(f"continuing the run in {out}")
        return ctx
    save_config(cfg, out / CONFIG)
    record = save_manifest(ctx.stream, out / SPLIT)
    log(
        f"{ctx.stream.splits.description}; {ctx.split.num_tasks} tasks of {list(ctx.split.task_sizes)} classes; "
        f"class order {list(ctx.split.order)} (split sha256 {record['sha256'][:12]}, in {out / SPLIT})"
    )
    return ctx


def stopped_before_first_checkpoint(folder: Path, cfg: L2CConfig) -> bool:
    """Whether `folder` holds only an l2c run (of a config with `cfg`'s sections) that stopped before any Trainer
    checkpoint: nothing there to protect, so the same command may start it over in place."""
    entries = [e for e in folder.iterdir() if not (e.name.startswith(".") and e.name.endswith(".tmp"))]
    if any(e.name not in RUN_ENTRIES for e in entries) or _has_checkpoint(folder):
        return False
    if not (folder / CONFIG).is_file():
        return True
    try:
        written = read_yaml_file(folder / CONFIG, CheckpointError)
    except CheckpointError:
        return False
    return isinstance(written, dict) and set(written) == set(to_dict(cfg))


def _has_checkpoint(folder: Path) -> bool:
    """Any Trainer checkpoint under `folder` (also one a killed save left moved aside)."""
    return any(True for _ in folder.rglob("checkpoints/last")) or any(
        True for _ in folder.rglob("checkpoints/.last.old")
    )


def _check_topk(topk: int, tasks: int, what: str) -> None:
    if not 1 <= topk <= tasks:
        raise ConfigError(f"top-k {topk} is out of range: choose k in 1..{tasks} (the {what})")


def trained_tasks(run: Path, stage: str) -> int:
    """How many consecutive tasks of `stage` (selector or experts) have their files in `run`."""
    pattern = (
        "selector/after_task_{}.safetensors"
        if stage == "selector"
        else "experts/head_after_task_{}.safetensors"
    )
    n = 0
    while (run / pattern.format(n)).is_file():
        n += 1
    return n


def _run_config(run: Path) -> Path:
    if not (run / CONFIG).is_file():
        raise CheckpointError(
            f"{run} is not an l2c run directory (no {CONFIG}); start one with `l2c train-selector` or `l2c run`"
        )
    return run / CONFIG


def _open(run: Path, cfg: L2CConfig) -> Context:
    ctx = build_context(cfg, split_file=run / SPLIT)
    check_manifest(ctx.stream, run / SPLIT)
    return ctx


# ------------------------------------------------------------------------------------------------- verbs


def train_selector(cfg: L2CConfig, out: Path, log: Log = print, resume: bool = False) -> AccuracyMatrix:
    ctx = start_run(cfg, out, log, resume=resume)
    matrix = stages.run_stage(stages.SelectorStage(ctx, out / "selector"), log)
    _save_matrix(matrix, out / "selector", "accuracy", "selector (continual LoRA) accuracy")
    return matrix


def experts_config(run: Path, config: str | None, overrides: list[str], resume: bool = False) -> L2CConfig:
    """The experts-stage config: `config`, else the stopped experts stage's own (with `resume`), else the run's;
    the sections both stages share must agree."""
    saved = load_l2c_config(str(_run_config(run)))
    stopped = run / "experts" / CONFIG
    default = stopped if resume and stopped.is_file() else run / CONFIG
    cfg = load_l2c_config(config or str(default), overrides)
    before, now = to_dict(saved), to_dict(cfg)
    for key in SHARED:
        if before[key] != now[key]:
            raise ConfigError(
                f"'{key}' differs from the selector's run {run} ({config or 'overrides'}); the experts must use the "
                "selector's model, data, split and seed"
            )
    return cfg


def train_experts(
    run: Path, config: str | None, overrides: list[str], log: Log = print, resume: bool = False
) -> AccuracyMatrix:
    cfg = experts_config(run, config, overrides, resume)
    tasks, needed = trained_tasks(run, "selector"), load_split(run / SPLIT).num_tasks
    if tasks < needed:
        raise CheckpointError(
            f"{run}: the selector has {tasks} of {needed} tasks; finish `l2c train-selector` first"
        )
    experts = run / "experts"
    if resume:
        check_output_dir(experts, cfg, resume=True)  # the stopped stage's own config
    elif experts.exists() and _has_checkpoint(experts):
        raise CheckpointError(
            f"{experts} already exists; pass --resume to continue it, or use another run directory to train "
            "experts again"
        )
    ctx = _open(run, cfg)
    if not (resume and (experts / CONFIG).is_file()):
        save_config(cfg, experts / CONFIG)
    matrix = stages.run_stage(stages.ExpertsStage(ctx, run), log)
    _save_matrix(matrix, run / "experts", "top1_validation", "experts, top-1 validation")
    return matrix


def evaluate(run: Path, topk: int, log: Log = print) -> dict[str, AccuracyMatrix]:
    """The accuracy matrices of L2C top-k and of top-1 hard selection, with task-identity accuracy and recall@k."""
    _run_config(run)
    tasks = trained_tasks(run, "experts")
    if tasks == 0 or not (run / "experts" / CONFIG).is_file():
        raise CheckpointError(
            f"{run}: no trained experts to evaluate; run `l2c train-experts --run {run}` first"
        )
    _check_topk(topk, tasks, f"tasks with trained experts in {run}")
    cfg = load_l2c_config(str(run / "experts" / CONFIG))
    ctx = _open(run, cfg)
    matrices = _evaluate(ctx, run, topk, tasks, log)
    folder = run / "eval" / f"top{topk}"
    _save_matrix(matrices["topk"], folder, "accuracy", f"L2C top-{topk}")
    _save_matrix(matrices["top1"], folder, "top1_accuracy", "top-1 hard selection")
    return matrices


def _load_experts(ctx: Context, run: Path, tasks: int) -> None:
    for t in range(tasks):
        name = expert_name(t)
        if name not in ctx.pool.adapters:
            ctx.pool.add(name, ctx.cfg.experts.lora)
        ctx.pool.load_adapter(name, load_weights(run / "experts" / f"{name}.safetensors"))


def _evaluate(ctx: Context, run: Path, topk: int, tasks: int, log: Log) -> dict[str, AccuracyMatrix]:
    _load_experts(ctx, run, tasks)
    split, batch = ctx.split, ctx.cfg.eval.batch_size
    top1, topk_matrix = AccuracyMatrix(split.num_tasks), AccuracyMatrix(split.num_tasks)
    recall = {}
    for t in range(tasks):
        head = new_head(ctx.pool.feature_dim, split.num_classes, 0)
        head.load_state_dict(stages.read_snapshot(run / "experts" / f"head_after_task_{t}.safetensors")[1])
        predictor = TopKPredictor(ctx.pool, stages.load_selector(ctx, run, t), head, split.offsets, t + 1)
        k = min(topk, t + 1)
        identity, recall[t] = _task_identity(ctx, predictor, t, k)
        top1.record(t, accuracy_per_task(partial(predictor.predict, k=1), ctx.stream, t, batch), identity)
        topk_matrix.record(
            t, accuracy_per_task(partial(predictor.predict, k=k), ctx.stream, t, batch), identity
        )
        log(f"top-1 {top1.line(t)}")
        log(f"top-{topk} {topk_matrix.line(t)}  task recall@{k} {100 * recall[t]:.1f}")
    return {"top1": top1, "topk": topk_matrix, "recall": recall}  # type: ignore[dict-item]


@torch.no_grad()
def _task_identity(ctx: Context, predictor: TopKPredictor, task: int, k: int) -> tuple[float, float]:
    weights, labels = [], []
    for x, y in torch.utils.data.DataLoader(ctx.stream.test_seen(task), batch_size=ctx.cfg.eval.batch_size):
        weights.append(predictor.task_weights(x))
        labels.append(y)
    g, true = torch.cat(weights), torch.as_tensor(ctx.split.task_of_labels())[torch.cat(labels)]
    return task_identity_accuracy(g.argmax(1), true), task_recall_at_k(g, true, k)


def run_all(cfg: L2CConfig, out: Path, log: Log = print, resume: bool = False) -> dict[str, dict[str, float]]:
    """Selector, experts, top-1 and top-k evaluation and the baselines in one process; writes the results table.

    With `resume`, every stage goes on where it stopped (finished stages are only reloaded) and the evaluation
    is redone."""
    ctx = start_run(cfg, out, log, topk=cfg.eval.topk, resume=resume)
    results: dict[str, dict[str, float]] = {}
    matrices = {
        "selector (continual LoRA)": stages.run_stage(stages.SelectorStage(ctx, out / "selector"), log)
    }
    _save_matrix(
        matrices["selector (continual LoRA)"], out / "selector", "accuracy", "selector (continual LoRA)"
    )
    save_config(cfg, out / "experts" / CONFIG)
    stages.run_stage(stages.ExpertsStage(ctx, out), log)
    evaluated = _evaluate(ctx, out, cfg.eval.topk, ctx.split.num_tasks, log)
    matrices["top-1 hard selection"] = evaluated["top1"]
    matrices[f"L2C top-{cfg.eval.topk}"] = evaluated["topk"]
    _save_matrix(
        evaluated["topk"], out / "eval" / f"top{cfg.eval.topk}", "accuracy", f"L2C top-{cfg.eval.topk}"
    )
    _save_matrix(
        evaluated["top1"], out / "eval" / f"top{cfg.eval.topk}", "top1_accuracy", "top-1 hard selection"
    )
    for name in cfg.baselines:
        matrices[name] = stages.run_stage(stages.BaselineStage(ctx, out / "baselines" / name, name), log)
        _save_matrix(matrices[name], out / "baselines" / name, "accuracy", name)
    results = {name: m.summary() for name, m in matrices.items()}
    table = format_results(results)
    params = format_parameter_table(parameter_table(ctx))
    atomic_write_text(
        out / "results.json",
        json.dumps({"results": results, "parameters": parameter_table(ctx)}, indent=1) + "\n",
    )
    atomic_write_text(out / "results.md", table + "\n\n" + params + "\n")
    log(table)
    log(params)
    return results


def format_results(results: dict[str, dict[str, float]]) -> str:
    lines = ["| method | FAA | CAA | FFM | BWT | task-id acc |", "|---|---:|---:|---:|---:|---:|"]
    for name, r in results.items():
        identity = f"{100 * r['task_identity']:.1f}" if "task_identity" in r else "-"
        lines.append(
            f"| {name} | {100 * r['faa']:.2f} | {100 * r['caa']:.2f} | {100 * r['ffm']:.2f} | {100 * r['bwt']:.2f} | {identity} |"
        )
    return "\n".join(lines)
