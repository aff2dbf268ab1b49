"""What a batch means: image classification or causal language modelling (loss and per-sample metrics)."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .models import model_output_logits


class Task:
    """Maps `(inputs, targets)` batches to logits, a training loss and per-sample eval statistics."""

    name = "task"

    def logits(self, model: nn.Module, inputs: Any) -> torch.Tensor:
        return model_output_logits(model(inputs))

    def loss(self, logits: torch.Tensor, targets: torch.Tensor, label_smoothing: float = 0.0) -> torch.Tensor:
        raise NotImplementedError

    def per_sample(self, logits: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(loss, accuracy) of each sample, for exact averaging across batches and processes."""
        raise NotImplementedError


class ClassificationTask(Task):
    name = "classification"

    def loss(self, logits, targets, label_smoothing=0.0):
        return F.cross_entropy(logits.float(), targets, label_smoothing=label_smoothing)

    def per_sample(self, logits, targets):
        loss = F.cross_entropy(logits.float(), targets, reduction="none")
        return loss, (logits.argmax(-1) == targets).float()


class CausalLMTask(Task):
    """Next-token prediction; targets are the input ids (shifted here, as transformers does)."""

    name = "causal-lm"

    def logits(self, model, inputs):
        return model_output_logits(model(input_ids=inputs))

    def loss(self, logits, targets, label_smoothing=0.0):
        shifted, labels = logits[:, :-1].float(), targets[:, 1:]
        return F.cross_entropy(
            shifted.reshape(-1, shifted.size(-1)), labels.reshape(-1), label_smoothing=label_smoothing
        )

    def per_sample(self, logits, targets):
        shifted, labels = logits[:, :-1].float(), targets[:, 1:]
        token_loss = F.cross_entropy(shifted.transpose(1, 2), labels, reduction="none")
        return token_loss.mean(1), (shifted.argmax(-1) == labels).float().mean(1)


TASKS: dict[str, type[Task]] = {"classification": ClassificationTask, "causal-lm": CausalLMTask}


def task_for(name: str) -> Task:
    """The Task instance for a dataset's task name."""
    return TASKS[name]()
