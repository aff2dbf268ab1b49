"""The training stages: the selector (stage 1), the experts (stage 2) and the baselines, task after task.

Every stage is the same loop (`run_stage`): per task, the core Trainer trains one adapter + head (its loss hook
masks to the current task); then the stage merges, collects class statistics and aligns its head, saves the
task's files and records the accuracy-matrix row, whose JSON (rewritten after every task) says how far the
stage got. Run again on the same folder, a stage restores its state after the last recorded task and goes on,
mid-task from the Trainer's `checkpoints/last`. Every random start is seeded by what it is for (Trainer, heads,
adapters, alignment), so a continued stage ends with the same weights as one that ran through.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import Dataset

from learngene_core.checkpoint import load_weights, read_json_file, save_weights
from learngene_core.config import TrainConfig
from learngene_core.continual import AccuracyMatrix, accuracy_per_task, task_identity_accuracy
from learngene_core.tasks import ClassificationTask
from learngene_core.trainer import Trainer

from .aggregate import SELECTOR, TopKPredictor, expert_name
from .align import align_head
from .classifier import AdapterClassifier, TaskLoss, labels_of, new_head, task_scores
from .config import AlignConfig
from .context import Context
from .cooperation import CooperationLoss
from .statistics import ClassStatistics, class_statistics

Log = Callable[[str], None]
Loss = Callable[[nn.Module, torch.Tensor, torch.Tensor], tuple]


@dataclass
class TaskTraining:
    """What one task of a stage trains: `model`'s adapter and head, with `loss`, on `train` (checked on `val`)."""

    model: AdapterClassifier
    loss: Loss
    cfg: TrainConfig
    train: Dataset
    val: Dataset
    lora_lr_scale: float = 1.0


class Stage:
    """One stage's per-task work; `run_stage` drives it. Subclasses say what a task trains and what it keeps."""

    label = ""  # printed before every accuracy-matrix line
    matrix_name = "accuracy"  # <out>/<matrix_name>.json: the rows recorded so far

    def __init__(self, ctx: Context, out: Path) -> None:
        self.ctx, self.out = ctx, out

    def begin(self, task: int) -> TaskTraining:
        """Add what `task` trains (adapters, head) and make it the trainable part."""
        raise NotImplementedError

    def end(self, task: int) -> None:
        """After `task`'s training: freeze, merge, collect statistics, align."""
        self.ctx.pool.activate(None)

    def save(self, task: int) -> None:
        """Write the state after `task` into `out` (what `restore` reads)."""

    def restore(self, task: int) -> None:
        """Load the state after `task` from `out`, as it was when `save(task)` wrote it."""

    def accuracies(self, task: int, training: TaskTraining) -> tuple[list[float], float | None]:
        """Accuracy on every seen task after `task` (and the task-identity accuracy, when the stage has one)."""
        return accuracy_per_task(
            labels_of(training.model), self.ctx.stream, task, self.ctx.cfg.eval.batch_size
        ), None


def run_stage(stage: Stage, log: Log) -> AccuracyMatrix:
    """Every task of `stage`, continuing after the tasks its matrix JSON already records."""
    ctx, progress = stage.ctx, stage.out / f"{stage.matrix_name}.json"
    matrix = AccuracyMatrix(ctx.split.num_tasks)
    if progress.is_file():
        matrix = AccuracyMatrix.from_dict(read_json_file(progress))
    done = matrix.learnt()
    if done:
        stage.restore(done - 1)
        log(f"{stage.label}: continuing after task {done - 1} ({stage.out})")
    for t in range(done, ctx.split.num_tasks):
        training = stage.begin(t)
        fit(ctx, training, stage.out / f"task_{t}", ctx.cfg.seed + t)
        stage.end(t)
        stage.save(t)
        matrix.record(t, *stage.accuracies(t, training))
        matrix.save_json(progress)
        log(f"{stage.label} {matrix.line(t)}")
    return matrix


def fit(ctx: Context, training: TaskTraining, out: Path, seed: int) -> None:
    """Train `training.model` (its trainable parameters only) with the core Trainer, writing to `out`.

    An existing `out` is a stopped attempt at this task: the Trainer continues it from `checkpoints/last`, or
    starts it over when it stopped before its first checkpoint."""
    cfg = replace(training.cfg, checkpoint_weights="trainable")

    def groups(module: nn.Module) -> list[dict]:
        lora = [p for p in module.pool.parameters() if p.requires_grad]
        return [
            {"params": lora, "lr": cfg.lr * training.lora_lr_scale, "weight_decay": cfg.weight_decay},
            {"params": list(module.head.parameters()), "weight_decay": 0.0},
        ]

    trainer = Trainer(
        training.model,
        cfg,
        ClassificationTask(),
        ctx.loader(training.train, shuffle=True, seed=seed),
        ctx.loader(training.val),
        None,
        output_dir=out,
        seed=seed,
        loss_fn=training.loss,
        param_groups=groups,
    )
    trainer.fit(resume=out.is_dir())
    training.model.eval()


def snapshot(path: Path, lora: dict[str, torch.Tensor] | None, head: nn.Linear) -> None:
    tensors = {f"head.{k}": v for k, v in head.state_dict().items()}
    save_weights(tensors | {f"lora.{k}": v for k, v in (lora or {}).items()}, path)


def read_snapshot(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """(LoRA tensors, head state) of a snapshot file."""
    tensors = load_weights(path)
    lora = {k[5:]: v for k, v in tensors.items() if k.startswith("lora.")}
    return lora, {k[5:]: v for k, v in tensors.items() if k.startswith("head.")}


def _restore_snapshot(ctx: Context, adapter: str, head: nn.Linear, path: Path) -> None:
    lora, head_state = read_snapshot(path)
    ctx.pool.load_adapter(adapter, lora)
    head.load_state_dict(head_state)


class _AlignedStage(Stage):
    """A stage whose shared head may be aligned on replay of the class statistics gathered so far."""

    def __init__(self, ctx: Context, out: Path, align: bool, cfg: AlignConfig) -> None:
        super().__init__(ctx, out)
        self.align, self.align_cfg = align, cfg
        self.stats = ClassStatistics({}, {})

    def _collect_and_align(self, adapter: str, task: int, head: nn.Linear) -> None:
        """Add task `task`'s class statistics (features of `adapter`) and, after the first task, align `head`."""
        if not self.align:
            return
        ctx = self.ctx
        features, labels = ctx.features(adapter, ctx.stream.train(task))
        self.stats = self.stats.merge(
            class_statistics(features, labels, self.align_cfg.centroids, ctx.cfg.seed)
        )
        if task > 0:
            align_head(head, self.stats, ctx.split.seen_classes(task), self.align_cfg, ctx.cfg.seed + task)

    def _stats_file(self, task: int) -> Path:
        return self.out / f"stats_after_task_{task}.safetensors"

    def _save_stats(self, task: int) -> None:
        if self.align:
            save_weights(self.stats.to_tensors(), self._stats_file(task))

    def _restore_stats(self, task: int) -> None:
        if self.align:
            self.stats = ClassStatistics.from_tensors(load_weights(self._stats_file(task)))


class SelectorStage(_AlignedStage):
    """Stage 1: a shared continual LoRA + head, task after task with current-task masking (HiDe-LoRA's TII)."""

    label = "selector"

    def __init__(self, ctx: Context, out: Path) -> None:
        cfg = ctx.cfg.selector
        super().__init__(ctx, out, cfg.align_head, cfg.align)
        ctx.pool.add(SELECTOR, cfg.lora, seed=ctx.cfg.seed)
        self.head = new_head(ctx.pool.feature_dim, ctx.split.num_classes, ctx.cfg.seed)

    def begin(self, task: int) -> TaskTraining:
        ctx, cfg = self.ctx, self.ctx.cfg.selector
        lo, hi = ctx.split.offsets[task], ctx.split.offsets[task + 1]
        ctx.pool.activate(SELECTOR)
        return TaskTraining(
            AdapterClassifier(ctx.pool, SELECTOR, self.head, hi),
            TaskLoss(lo, hi, cfg.mask_current_task),
            cfg.train,
            ctx.stream.train(task),
            ctx.stream.val(task),
            cfg.lora_lr_scale,
        )

    def end(self, task: int) -> None:
        super().end(task)
        self._collect_and_align(SELECTOR, task, self.head)

    def save(self, task: int) -> None:
        self._save_stats(task)
        snapshot(
            self.out / f"after_task_{task}.safetensors", self.ctx.pool.adapter_state(SELECTOR), self.head
        )

    def restore(self, task: int) -> None:
        _restore_snapshot(self.ctx, SELECTOR, self.head, self.out / f"after_task_{task}.safetensors")
        self._restore_stats(task)

    def accuracies(self, task: int, training: TaskTraining) -> tuple[list[float], float | None]:
        return super().accuracies(task, training)[0], self._task_identity(task)

    def _task_identity(self, task: int) -> float:
        """How often the arg-max task of the per-task max logits is the sample's own task (seen test data)."""
        ctx = self.ctx
        features, labels = ctx.features(SELECTOR, ctx.stream.test_seen(task))
        offsets = ctx.split.offsets
        scores = task_scores(self.head(features)[:, : offsets[task + 1]], offsets, task + 1)
        true = torch.as_tensor(ctx.split.task_of_labels())[labels]
        return task_identity_accuracy(scores.argmax(1), true)


def load_selector(ctx: Context, run: Path, task: int) -> nn.Linear:
    """Put the selector of `task`'s snapshot into the pool; return its head."""
    if SELECTOR not in ctx.pool.adapters:
        ctx.pool.add(SELECTOR, ctx.cfg.selector.lora)
    head = new_head(ctx.pool.feature_dim, ctx.split.num_classes, 0)
    _restore_snapshot(ctx, SELECTOR, head, run / "selector" / f"after_task_{task}.safetensors")
    return head


class ExpertsStage(_AlignedStage):
    """Stage 2: expert t = a LoRA initialised from expert t-1, trained on task t; shared head aligned on replay.

    Validation after each task uses the top-1 expert only (as the seed does, to save time)."""

    label = "experts (top-1 validation)"
    matrix_name = "top1_validation"

    def __init__(self, ctx: Context, run: Path) -> None:
        cfg = ctx.cfg.experts
        super().__init__(ctx, run / "experts", cfg.align_head, cfg.align)
        self.run = run
        self.head = new_head(ctx.pool.feature_dim, ctx.split.num_classes, ctx.cfg.seed + 1)
        self.predictor: TopKPredictor | None = None

    def _add_expert(self, task: int) -> None:
        cfg = self.ctx.cfg.experts
        previous = expert_name(task - 1) if task > 0 and cfg.init_from_previous else None
        self.ctx.pool.add(expert_name(task), cfg.lora, init_from=previous, seed=self.ctx.cfg.seed + task)

    def begin(self, task: int) -> TaskTraining:
        ctx, cfg = self.ctx, self.ctx.cfg.experts
        lo, hi = ctx.split.offsets[task], ctx.split.offsets[task + 1]
        selector_head = load_selector(ctx, self.run, task)  # first: adding an adapter freezes every adapter
        self._add_expert(task)
        ctx.pool.activate(expert_name(task))
        self.predictor = TopKPredictor(ctx.pool, selector_head, self.head, ctx.split.offsets, task + 1)
        loss: Loss = TaskLoss(lo, hi, cfg.mask_current_task)
        if cfg.cooperation > 0 and task > 0:
            k = min(ctx.cfg.eval.topk, task + 1)
            loss = CooperationLoss(loss, self.predictor, task, k, cfg.cooperation)  # type: ignore[arg-type]
        model = AdapterClassifier(ctx.pool, expert_name(task), self.head, hi)
        return TaskTraining(model, loss, cfg.train, ctx.stream.train(task), ctx.stream.val(task))

    def end(self, task: int) -> None:
        super().end(task)
        if self.ctx.cfg.experts.momentum > 0 and task > 0:
            _momentum_merge(self.ctx, task, self.ctx.cfg.experts.momentum)
        self._collect_and_align(expert_name(task), task, self.head)

    def save(self, task: int) -> None:
        """The expert, the statistics, and last the head (`l2c eval` counts trained tasks by the head files)."""
        name = expert_name(task)
        save_weights(self.ctx.pool.adapter_state(name), self.out / f"{name}.safetensors")
        self._save_stats(task)
        snapshot(self.out / f"head_after_task_{task}.safetensors", None, self.head)

    def restore(self, task: int) -> None:
        for t in range(task + 1):
            self._add_expert(t)
            self.ctx.pool.load_adapter(
                expert_name(t), load_weights(self.out / f"{expert_name(t)}.safetensors")
            )
        self.head.load_state_dict(read_snapshot(self.out / f"head_after_task_{task}.safetensors")[1])
        self._restore_stats(task)

    def accuracies(self, task: int, training: TaskTraining) -> tuple[list[float], float | None]:
        assert self.predictor is not None
        self.predictor.pool.eval()
        predict = partial(self.predictor.predict, k=1)
        return accuracy_per_task(predict, self.ctx.stream, task, self.ctx.cfg.eval.batch_size), None


@torch.no_grad()
def _momentum_merge(ctx: Context, task: int, momentum: float) -> None:
    """expert t <- (1 - m) expert t + m * mean of experts 0..t-1 (HiDe's optional momentum)."""
    states = [ctx.pool.adapter_state(expert_name(k)) for k in range(task)]
    own = ctx.pool.adapter_state(expert_name(task))
    merged = {
        k: (1 - momentum) * v + momentum * torch.stack([s[k] for s in states]).mean(0) for k, v in own.items()
    }
    ctx.pool.load_adapter(expert_name(task), merged)


class BaselineStage(Stage):
    """`sequential` (lower bound): one LoRA + head fine-tuned task after task over every seen class, no masking,
    no replay. `joint` (upper bound): after each task a fresh LoRA + head trained on every seen task's data."""

    def __init__(self, ctx: Context, out: Path, name: str) -> None:
        super().__init__(ctx, out)
        self.label, self.joint = name, name == "joint"
        ctx.pool.add(name, ctx.cfg.experts.lora, seed=ctx.cfg.seed)
        self.fresh = ctx.pool.adapter_state(name)
        self.head_seed = ctx.cfg.seed + (3 if self.joint else 2)
        self.head = new_head(ctx.pool.feature_dim, ctx.split.num_classes, self.head_seed)

    def begin(self, task: int) -> TaskTraining:
        ctx, hi = self.ctx, self.ctx.split.offsets[task + 1]
        if self.joint:
            ctx.pool.load_adapter(self.label, self.fresh)
            self.head = new_head(ctx.pool.feature_dim, ctx.split.num_classes, self.head_seed)
            train, val = ctx.stream.train_seen(task), ctx.stream.view("val", 0, task)
        else:
            train, val = ctx.stream.train(task), ctx.stream.val(task)
        ctx.pool.activate(self.label)
        model = AdapterClassifier(ctx.pool, self.label, self.head, hi)
        return TaskTraining(model, TaskLoss(0, hi, False), ctx.cfg.baseline_train, train, val)

    def save(self, task: int) -> None:
        if not self.joint:  # joint starts every task afresh: nothing carries over
            snapshot(
                self.out / f"after_task_{task}.safetensors",
                self.ctx.pool.adapter_state(self.label),
                self.head,
            )

    def restore(self, task: int) -> None:
        if not self.joint:
            _restore_snapshot(self.ctx, self.label, self.head, self.out / f"after_task_{task}.safetensors")
