"""[hypothesis] The cooperation term of stage 2: cross-entropy of the top-k mixture on the current task's data.

The spec's reading of the paper's unspecified "cooperation" objective: while expert t learns task t, the
prediction sum_{k in top-k(g)} g_k f_k(x) (with the selector of task t, the frozen earlier experts and the
shared head) is also trained to be right, so the new expert and the head learn to work with the selector's
(possibly wrong) allocation. Gradients reach expert t and the head only. Off by default (weight 0).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .aggregate import TopKPredictor, expert_name
from .classifier import AdapterClassifier, TaskLoss


class CooperationLoss:
    """`base` task loss + `weight` x NLL of the top-k mixture, for the core Trainer's `loss_fn` hook."""

    def __init__(self, base: TaskLoss, predictor: TopKPredictor, task: int, k: int, weight: float) -> None:
        self.base, self.predictor, self.task, self.k, self.weight = base, predictor, task, k, weight

    def __call__(self, model: nn.Module, inputs: Tensor, targets: Tensor) -> tuple[Tensor, Tensor, dict]:
        loss, logits, parts = self.base(model, inputs, targets)
        assert isinstance(model, AdapterClassifier)
        pool, head, seen = model.pool, model.head, model.seen
        with torch.no_grad():
            g = self.predictor.task_weights(inputs)
        top = g.topk(self.k, dim=1)
        mixture = torch.zeros_like(logits)
        for expert in top.indices.unique().tolist():
            rows, slots = (top.indices == expert).nonzero(as_tuple=True)
            if expert == self.task:
                probs = logits[rows].softmax(1)
            else:
                with torch.no_grad():
                    features = pool.features(inputs[rows], expert_name(expert))
                probs = head(features)[:, :seen].softmax(1)
            mixture = mixture.index_add(0, rows, top.values[rows, slots].unsqueeze(1) * probs)
        pool.features(inputs[:1], model.adapter)  # switch back to the trained expert before backward
        cooperation = F.nll_loss(mixture.clamp_min(1e-8).log(), targets)
        return loss + self.weight * cooperation, logits, {**parts, "cooperation": cooperation.detach()}
