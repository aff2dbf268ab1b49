"""Meta-gradient training of the transfer weights (L2T-ww style), as a loss function of the core Trainer.

Every `meta_every` steps: from the pseudo-descendant's current parameters theta, take `inner_steps` SGD steps on
the weighted matching loss and one on cross-entropy (all with `torch.func`, differentiable in phi), then update
phi to lower the cross-entropy after those steps. The Trainer's own step then trains theta on
CE + beta * L_transfer with phi held fixed. Weights are accumulated for the final read-out.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from torch.func import functional_call, grad

from learngene_core.tasks import ClassificationTask, Task

from .config import AutoSpec
from .transfer import LayerTap, MetaWeights


class AncestryFeatures:
    """The frozen ancestry; calling it gives the outputs S_m(x) of its layers."""

    def __init__(self, ancestry: nn.Module) -> None:
        self.ancestry = ancestry.eval().requires_grad_(False)
        self.tap = LayerTap(ancestry)

    @torch.no_grad()
    def __call__(self, inputs: Tensor) -> list[Tensor]:
        self.ancestry(inputs)
        return self.tap.take()


class MetaTransferLoss:
    """`loss_fn(model, inputs, targets)` for the Trainer; owns the meta-network phi and its optimizer (both, with
    the step count and meta losses, go into the Trainer's checkpoints: a resumed run continues meta-training)."""

    def __init__(
        self, sources: AncestryFeatures, meta: MetaWeights, spec: AutoSpec, task: Task | None = None
    ) -> None:
        self.sources, self.meta, self.spec = sources, meta, spec
        self.task = task or ClassificationTask()  # the pseudo-descendant's loss (causal-lm shifts targets)
        self.optimizer = torch.optim.Adam(meta.parameters(), lr=spec.meta_lr)
        self.calls = 0
        self.meta_losses: list[float] = []
        self.last_ce: Tensor | None = None  # the last step's cross-entropy, to tell whose loop diverged

    def meta_step(self, student: nn.Module, inputs: Tensor, targets: Tensor, sources: list[Tensor]) -> float:
        """One update of phi through `inner_steps` matching steps and one CE step of a functional copy of theta."""
        weights = self.meta(sources)
        theta = {name: p.detach() for name, p in student.named_parameters()}
        lr = self.spec.inner_lr

        def matching(params: dict[str, Tensor]) -> Tensor:
            return functional_call(student, params, (inputs, sources, weights))[1]

        def cross_entropy(params: dict[str, Tensor]) -> Tensor:
            return self.task.loss(functional_call(student, params, (inputs,)), targets)

        for _ in range(self.spec.inner_steps):
            step = grad(matching)(theta)
            theta = {name: theta[name] - lr * step[name] for name in theta}
        step = grad(cross_entropy)(theta)
        theta = {name: theta[name] - lr * step[name] for name in theta}
        meta_loss = cross_entropy(theta)
        self.optimizer.zero_grad(set_to_none=True)
        meta_loss.backward()
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        return float(meta_loss.detach())

    def checkpoint_state(self) -> dict[str, object]:
        return {
            "meta": self.meta.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "calls": self.calls,
            "meta_losses": list(self.meta_losses),
        }

    def restore_checkpoint_state(self, state: dict[str, object]) -> None:
        self.meta.load_state_dict(state["meta"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.calls, self.meta_losses = int(state["calls"]), [float(v) for v in state["meta_losses"]]

    def divergence_hint(self) -> str | None:
        """For the Trainer's non-finite message: when phi or the meta loss became non-finite while the
        pseudo-descendant's own cross-entropy was still finite, the meta loop diverged: name its keys."""
        meta_finite = all(torch.isfinite(p).all() for p in self.meta.parameters()) and all(
            math.isfinite(v) for v in self.meta_losses[-1:]
        )
        if meta_finite or self.last_ce is None or not torch.isfinite(self.last_ce):
            return None
        return "the meta-training diverged first: try a lower method.meta_lr (or method.inner_lr)"

    def probe(self, model: nn.Module, inputs: Tensor, targets: Tensor) -> None:
        """The loss on one batch without the meta step, for the Trainer's check before step 1 (eval mode, no
        gradients): phi, its optimizer and the step count stay as they are."""
        sources = self.sources(inputs)
        logits, _ = model(inputs, sources, self.meta(sources))
        self.task.loss(logits, targets)

    def __call__(self, model: nn.Module, inputs: Tensor, targets: Tensor):
        sources = self.sources(inputs)
        if self.calls % self.spec.meta_every == 0:
            self.meta_losses.append(self.meta_step(model, inputs, targets, sources))
        self.calls += 1
        with torch.no_grad():
            weights = self.meta(sources)
        logits, transfer = model(inputs, sources, weights)
        ce = self.task.loss(logits, targets)
        self.last_ce = ce.detach()
        loss = ce + self.spec.transfer_weight * transfer
        parts = {"ce": ce.detach(), "transfer": transfer.detach()}
        if self.meta_losses:
            parts["meta_ce"] = torch.tensor(self.meta_losses[-1])
        return loss, logits, parts

    @torch.no_grad()
    def mean_weights(self, loader, batches: int) -> dict[tuple[int, int], float]:
        """mean_x lambda_{m,n}(x) over the first `batches` batches of `loader`."""
        sums: dict[tuple[int, int], float] = {}
        count = 0
        for i, (inputs, _) in enumerate(loader):
            if i >= batches:
                break
            for pair, value in self.meta(self.sources(inputs)).items():
                sums[pair] = sums.get(pair, 0.0) + float(value.sum())
            count += len(inputs)
        return {pair: total / max(count, 1) for pair, total in sums.items()}
