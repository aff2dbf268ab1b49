"""The training stages: the selector (stage 1), the experts (stage 2) and the baselines, task after task.

Each task's training is the core Trainer (its loss hook masks to the current task); between tasks the stages
only add adapters, copy states, compute class statistics and align heads. After every task they print the
accuracy-matrix line and keep a snapshot in the run directory.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from functools import partial
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import Dataset

from learngene_core.checkpoint import load_weights, save_weights
from learngene_core.config import TrainConfig
from learngene_core.continual import AccuracyMatrix, accuracy_per_task, task_identity_accuracy
from learngene_core.tasks import ClassificationTask
from learngene_core.trainer import Trainer

from .aggregate import SELECTOR, expert_name
from .align import align_head
from .classifier import AdapterClassifier, TaskLoss, labels_of, new_head, task_scores
from .config import AlignConfig
from .context import Context
from .statistics import ClassStatistics, class_statistics

Log = Callable[[str], None]


def fit(
    ctx: Context,
    model: AdapterClassifier,
    train_cfg: TrainConfig,
    train: Dataset,
    val: Dataset,
    out: Path,
    seed: int,
    loss: Callable,
    lora_lr_scale: float = 1.0,
) -> None:
    """Train `model` (its trainable parameters only) on `train` with the core Trainer, writing to `out`."""
    cfg = replace(train_cfg, checkpoint_weights="trainable")

    def groups(module: nn.Module) -> list[dict]:
        lora = [p for p in module.pool.parameters() if p.requires_grad]
        return [
            {"params": lora, "lr": cfg.lr * lora_lr_scale, "weight_decay": cfg.weight_decay},
            {"params": list(module.head.parameters()), "weight_decay": 0.0},
        ]

    trainer = Trainer(
        model,
        cfg,
        ClassificationTask(),
        ctx.loader(train, shuffle=True, seed=seed),
        ctx.loader(val),
        None,
        output_dir=out,
        seed=seed,
        loss_fn=loss,
        param_groups=groups,
    )
    trainer.fit()
    model.eval()


def snapshot(path: Path, lora: dict[str, torch.Tensor] | None, head: nn.Linear) -> None:
    tensors = {f"head.{k}": v for k, v in head.state_dict().items()}
    save_weights(tensors | {f"lora.{k}": v for k, v in (lora or {}).items()}, path)


def read_snapshot(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """(LoRA tensors, head state) of a snapshot file."""
    tensors = load_weights(path)
    lora = {k[5:]: v for k, v in tensors.items() if k.startswith("lora.")}
    return lora, {k[5:]: v for k, v in tensors.items() if k.startswith("head.")}


def _align(
    ctx: Context, adapter: str, task: int, stats: ClassStatistics, head: nn.Linear, cfg: AlignConfig
) -> ClassStatistics:
    """Add task `task`'s class statistics (features of `adapter`) and, after the first task, align `head`."""
    features, labels = ctx.features(adapter, ctx.stream.train(task))
    stats = stats.merge(class_statistics(features, labels, cfg.centroids, ctx.cfg.seed))
    if task > 0:
        align_head(head, stats, ctx.split.seen_classes(task), cfg, ctx.cfg.seed + task)
    return stats


def _task_identity(ctx: Context, adapter: str, head: nn.Linear, task: int) -> float:
    """How often the arg-max task of the per-task max logits is the sample's own task (seen test data)."""
    features, labels = ctx.features(adapter, ctx.stream.test_seen(task))
    offsets = ctx.split.offsets
    scores = task_scores(head(features)[:, : offsets[task + 1]], offsets, task + 1)
    true = torch.as_tensor(ctx.split.task_of_labels())[labels]
    return task_identity_accuracy(scores.argmax(1), true)


def train_selector(ctx: Context, out: Path, log: Log) -> AccuracyMatrix:
    """Stage 1: a shared continual LoRA + head, task after task with current-task masking (HiDe-LoRA's TII)."""
    cfg, split = ctx.cfg, ctx.split
    ctx.pool.add(SELECTOR, cfg.selector.lora)
    head = new_head(ctx.pool.feature_dim, split.num_classes, cfg.seed)
    matrix, stats = AccuracyMatrix(split.num_tasks), ClassStatistics({}, {})
    for t in range(split.num_tasks):
        lo, hi = split.offsets[t], split.offsets[t + 1]
        ctx.pool.activate(SELECTOR)
        model = AdapterClassifier(ctx.pool, SELECTOR, head, hi)
        loss = TaskLoss(lo, hi, cfg.selector.mask_current_task)
        fit(
            ctx,
            model,
            cfg.selector.train,
            ctx.stream.train(t),
            ctx.stream.val(t),
            out / f"task_{t}",
            cfg.seed + t,
            loss,
            cfg.selector.lora_lr_scale,
        )
        ctx.pool.activate(None)
        if cfg.selector.align_head:
            stats = _align(ctx, SELECTOR, t, stats, head, cfg.selector.align)
        snapshot(out / f"after_task_{t}.safetensors", ctx.pool.adapter_state(SELECTOR), head)
        accuracies = accuracy_per_task(labels_of(model), ctx.stream, t, cfg.eval.batch_size)
        matrix.record(t, accuracies, _task_identity(ctx, SELECTOR, head, t))
        log(f"selector {matrix.line(t)}")
    return matrix


def load_selector(ctx: Context, run: Path, task: int) -> nn.Linear:
    """Put the selector of `task`'s snapshot into the pool; return its head."""
    lora, head_state = read_snapshot(run / "selector" / f"after_task_{task}.safetensors")
    if SELECTOR not in ctx.pool.adapters:
        ctx.pool.add(SELECTOR, ctx.cfg.selector.lora)
    ctx.pool.load_adapter(SELECTOR, lora)
    head = new_head(ctx.pool.feature_dim, ctx.split.num_classes, 0)
    head.load_state_dict(head_state)
    return head


def train_experts(ctx: Context, run: Path, log: Log) -> AccuracyMatrix:
    """Stage 2: expert t = a LoRA initialised from expert t-1, trained on task t; shared head aligned on replay.

    Validation after each task uses the top-1 expert only (as the seed does, to save time)."""
    from .aggregate import TopKPredictor
    from .cooperation import CooperationLoss

    cfg, split, out = ctx.cfg, ctx.split, run / "experts"
    head = new_head(ctx.pool.feature_dim, split.num_classes, cfg.seed + 1)
    matrix, stats = AccuracyMatrix(split.num_tasks), ClassStatistics({}, {})
    for t in range(split.num_tasks):
        lo, hi = split.offsets[t], split.offsets[t + 1]
        name = expert_name(t)
        previous = expert_name(t - 1) if t > 0 and cfg.experts.init_from_previous else None
        ctx.pool.add(name, cfg.experts.lora, init_from=previous)
        ctx.pool.activate(name)
        model = AdapterClassifier(ctx.pool, name, head, hi)
        predictor = TopKPredictor(ctx.pool, load_selector(ctx, run, t), head, split.offsets, t + 1)
        loss: TaskLoss | CooperationLoss = TaskLoss(lo, hi, cfg.experts.mask_current_task)
        if cfg.experts.cooperation > 0 and t > 0:
            k = min(cfg.eval.topk, t + 1)
            loss = CooperationLoss(loss, predictor, t, k, cfg.experts.cooperation)
        fit(
            ctx,
            model,
            cfg.experts.train,
            ctx.stream.train(t),
            ctx.stream.val(t),
            out / f"task_{t}",
            cfg.seed + t,
            loss,
        )
        ctx.pool.activate(None)
        if cfg.experts.momentum > 0 and t > 0:
            _momentum_merge(ctx, t, cfg.experts.momentum)
        if cfg.experts.align_head:
            stats = _align(ctx, name, t, stats, head, cfg.experts.align)
        save_weights(ctx.pool.adapter_state(name), out / f"{name}.safetensors")
        snapshot(out / f"head_after_task_{t}.safetensors", None, head)
        save_weights(stats.to_tensors(), out / f"stats_after_task_{t}.safetensors")
        predictor.pool.eval()
        accuracies = accuracy_per_task(partial(predictor.predict, k=1), ctx.stream, t, cfg.eval.batch_size)
        matrix.record(t, accuracies)
        log(f"experts (top-1 validation) {matrix.line(t)}")
    return matrix


@torch.no_grad()
def _momentum_merge(ctx: Context, task: int, momentum: float) -> None:
    """expert t <- (1 - m) expert t + m * mean of experts 0..t-1 (HiDe's optional momentum)."""
    states = [ctx.pool.adapter_state(expert_name(k)) for k in range(task)]
    own = ctx.pool.adapter_state(expert_name(task))
    merged = {
        k: (1 - momentum) * v + momentum * torch.stack([s[k] for s in states]).mean(0) for k, v in own.items()
    }
    ctx.pool.load_adapter(expert_name(task), merged)


def train_sequential(ctx: Context, out: Path, log: Log) -> AccuracyMatrix:
    """Lower bound: one LoRA + head fine-tuned task after task over every seen class, no masking, no replay."""
    cfg, split = ctx.cfg, ctx.split
    ctx.pool.add("sequential", cfg.experts.lora)
    head = new_head(ctx.pool.feature_dim, split.num_classes, cfg.seed + 2)
    matrix = AccuracyMatrix(split.num_tasks)
    for t in range(split.num_tasks):
        hi = split.offsets[t + 1]
        ctx.pool.activate("sequential")
        model = AdapterClassifier(ctx.pool, "sequential", head, hi)
        fit(
            ctx,
            model,
            cfg.baseline_train,
            ctx.stream.train(t),
            ctx.stream.val(t),
            out / f"task_{t}",
            cfg.seed + t,
            TaskLoss(0, hi, False),
        )
        ctx.pool.activate(None)
        matrix.record(t, accuracy_per_task(labels_of(model), ctx.stream, t, cfg.eval.batch_size))
        log(f"sequential {matrix.line(t)}")
    return matrix


def train_joint(ctx: Context, out: Path, log: Log) -> AccuracyMatrix:
    """Upper bound: after each task, a fresh LoRA + head trained on the training data of every seen task."""
    cfg, split = ctx.cfg, ctx.split
    ctx.pool.add("joint", cfg.experts.lora)
    fresh = ctx.pool.adapter_state("joint")
    matrix = AccuracyMatrix(split.num_tasks)
    for t in range(split.num_tasks):
        hi = split.offsets[t + 1]
        ctx.pool.load_adapter("joint", fresh)
        head = new_head(ctx.pool.feature_dim, split.num_classes, cfg.seed + 3)
        ctx.pool.activate("joint")
        model = AdapterClassifier(ctx.pool, "joint", head, hi)
        train, val = ctx.stream.train_seen(t), ctx.stream.view("val", 0, t)
        fit(
            ctx,
            model,
            cfg.baseline_train,
            train,
            val,
            out / f"task_{t}",
            cfg.seed + t,
            TaskLoss(0, hi, False),
        )
        ctx.pool.activate(None)
        matrix.record(t, accuracy_per_task(labels_of(model), ctx.stream, t, cfg.eval.batch_size))
        log(f"joint {matrix.line(t)}")
    return matrix
