"""Inference after task t: the selector's per-task max logits -> softmax task weights g -> the top-k experts,
prediction = sum over the top k of g_k * softmax(expert head on expert k's features).

`grouped=True` replicates each sample once per selected expert and runs all of them in one mixed-adapter
batch (peft applies each expert's LoRA to its own samples); `grouped=False` is the reference loop, one pass
per sample per expert. Both give the same numbers. Every sample is predicted from itself alone.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .classifier import task_scores
from .pool import AdapterPool

SELECTOR = "selector"


def expert_name(task: int) -> str:
    return f"expert_{task}"


class TopKPredictor:
    """The L2C predictor after learning `tasks` tasks (selector, its head, experts 0..tasks-1, the expert head)."""

    def __init__(
        self,
        pool: AdapterPool,
        selector_head: nn.Linear,
        expert_head: nn.Linear,
        offsets: tuple[int, ...],
        tasks: int,
    ) -> None:
        self.pool = pool.eval()
        self.selector_head = selector_head
        self.expert_head = expert_head
        self.offsets = offsets
        self.tasks = tasks
        self.seen = offsets[tasks]

    @torch.no_grad()
    def task_weights(self, x: Tensor) -> Tensor:
        """g(x): softmax over seen tasks of the selector's max class logit per task, (B, tasks)."""
        logits = self.selector_head(self.pool.features(x, SELECTOR))[:, : self.seen]
        return task_scores(logits, self.offsets, self.tasks).softmax(1)

    @torch.no_grad()
    def expert_probs(self, x: Tensor, experts: Tensor, grouped: bool = True) -> Tensor:
        """softmax over seen classes of expert experts[i, j] on sample i: (B, k, seen)."""
        batch, k = experts.shape
        if grouped:
            names = [expert_name(int(e)) for e in experts.reshape(-1)]
            features = self.pool.mixed_features(x.repeat_interleave(k, 0), names)
        else:
            features = torch.cat(
                [
                    self.pool.features(x[i : i + 1], expert_name(int(e)))
                    for i in range(batch)
                    for e in experts[i]
                ]
            )
        return self.expert_head(features)[:, : self.seen].softmax(1).reshape(batch, k, self.seen)

    @torch.no_grad()
    def predict_proba(self, x: Tensor, k: int, grouped: bool = True, weights: Tensor | None = None) -> Tensor:
        """sum_{j in top-k(g)} g_j f_j(x): (B, seen); `weights` replaces the selector's g (for tests)."""
        g = self.task_weights(x) if weights is None else weights
        top = g.topk(k, dim=1)
        return (top.values.unsqueeze(2) * self.expert_probs(x, top.indices, grouped)).sum(1)

    def predict(self, x: Tensor, k: int, grouped: bool = True) -> Tensor:
        return self.predict_proba(x, k, grouped).argmax(1)

    @torch.no_grad()
    def hard_selection(self, x: Tensor) -> Tensor:
        """Task isolation (HiDe-LoRA style): the arg-max task's expert alone classifies each sample."""
        task = self.task_weights(x).argmax(1)
        features = torch.cat(
            [self.pool.features(x[i : i + 1], expert_name(int(task[i]))) for i in range(len(x))]
        )
        return self.expert_head(features)[:, : self.seen].argmax(1)

    @torch.no_grad()
    def ensemble(self, x: Tensor) -> Tensor:
        """The plain average of every expert's class probabilities, (B, seen)."""
        return torch.stack(
            [
                self.expert_head(self.pool.features(x, expert_name(t)))[:, : self.seen].softmax(1)
                for t in range(self.tasks)
            ]
        ).mean(0)
