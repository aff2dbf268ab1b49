"""Per-layer change of a model over one task: RMS gradient per step and relative update over the task."""

from __future__ import annotations

import torch
from torch import nn

from learngene_core.learngene.inherit import layer_modules, layer_snapshots


class LayerTracker:
    """Attach to a model before a task, `finish()` after it: per-layer gradient RMS and relative update.

    As a Trainer callback, its running sums go into the task's checkpoints, so a resumed task counts every step.
    """

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        self.start = layer_snapshots(model)
        self.sizes = [s.numel() for s in self.start]
        self.grad_sq = [0.0] * len(self.start)
        self.steps = 0
        self.handles = []
        for i, module in enumerate(layer_modules(model)):
            for param in module.parameters():
                self.handles.append(param.register_post_accumulate_grad_hook(self._hook(i)))
        first = next(iter(layer_modules(model)[0].parameters()))
        self.handles.append(first.register_post_accumulate_grad_hook(self._count))

    def _hook(self, layer: int):
        def hook(param: torch.Tensor) -> None:
            self.grad_sq[layer] += float(param.grad.detach().float().square().sum())

        return hook

    def _count(self, param: torch.Tensor) -> None:
        self.steps += 1

    def checkpoint_state(self) -> dict[str, object]:
        return {"grad_sq": list(self.grad_sq), "steps": self.steps}

    def restore_checkpoint_state(self, state: dict[str, object]) -> None:
        grad_sq = state["grad_sq"]
        if not isinstance(grad_sq, list) or len(grad_sq) != len(self.grad_sq):
            raise ValueError(f"gradient sums of {len(self.grad_sq)} layers expected")
        self.grad_sq, self.steps = [float(g) for g in grad_sq], int(state["steps"])

    def finish(self) -> dict[str, list[float]]:
        """Remove the hooks; return `gradient` (mean per-step RMS) and `update` (relative change) per layer."""
        for handle in self.handles:
            handle.remove()
        end = layer_snapshots(self.model)
        update = [float((e - s).norm() / s.norm().clamp_min(1e-12)) for s, e in zip(self.start, end)]
        steps = max(self.steps, 1)
        gradient = [(g / steps / n) ** 0.5 for g, n in zip(self.grad_sq, self.sizes)]
        return {"update": update, "gradient": gradient}
