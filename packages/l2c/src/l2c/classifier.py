"""A classifier = one adapter of the pool + a linear head over the classes seen so far; and the task loss."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .pool import AdapterPool


class AdapterClassifier(nn.Module):
    """Logits over the first `seen` stream labels from `head(pool.features(x, adapter))`."""

    def __init__(self, pool: AdapterPool, adapter: str, head: nn.Linear, seen: int) -> None:
        super().__init__()
        self.pool = pool
        self.adapter = adapter
        self.head = head
        self.seen = seen

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.pool.features(x, self.adapter))[:, : self.seen]


def labels_of(model: nn.Module) -> Callable[[Tensor], Tensor]:
    """The arg-max label predictor of a classifier (for accuracy_per_task)."""
    return lambda x: model(x).argmax(1)


def new_head(feature_dim: int, num_classes: int, seed: int) -> nn.Linear:
    """A seeded linear head over every class of the split (rows of unseen classes are never read)."""
    generator_state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    head = nn.Linear(feature_dim, num_classes)
    torch.random.set_rng_state(generator_state)
    return head


class TaskLoss:
    """Cross-entropy for the core Trainer's `loss_fn` hook; with `mask`, over the current task's classes only
    (labels lo..hi-1, other logits excluded as in HiDe-LoRA), else over every seen class."""

    def __init__(self, lo: int, hi: int, mask: bool) -> None:
        self.lo, self.hi, self.mask = lo, hi, mask

    def __call__(self, model: nn.Module, inputs: Tensor, targets: Tensor) -> tuple[Tensor, Tensor, dict]:
        logits = model(inputs)
        if self.mask:
            return F.cross_entropy(logits[:, self.lo : self.hi], targets - self.lo), logits, {}
        return F.cross_entropy(logits, targets), logits, {}


def task_scores(class_logits: Tensor, offsets: tuple[int, ...], tasks: int) -> Tensor:
    """Per-task scores s_k(x) = max of the logits of task k's classes, for tasks 0..tasks-1: (B, tasks)."""
    return torch.stack([class_logits[:, offsets[k] : offsets[k + 1]].amax(1) for k in range(tasks)], dim=1)
