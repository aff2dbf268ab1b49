"""What a learngene saves: steps to reach scratch's plateau, the data fraction needed for a loss, and training cost
against scratch in FLOPs.

A curve is a list of (optimizer step, validation metric) pairs, as `metrics.jsonl` records them. The cost of a
training step is batch x (3 x forward FLOPs + the teacher's forward FLOPs when distilling): the backward pass
costs about twice the forward one.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

Curve = Sequence[tuple[int, float]]


def plateau(curve: Curve, tail: float = 0.25) -> float:
    """The metric a run settles at: the mean over the last `tail` fraction of its evaluations (at least one)."""
    if not curve:
        raise ValueError("an empty curve has no plateau")
    if not 0 < tail <= 1:
        raise ValueError(f"tail must be in (0, 1], got {tail}")
    last = curve[-max(1, math.ceil(len(curve) * tail)) :]
    return sum(value for _, value in last) / len(last)


def steps_to_reach(curve: Curve, target: float, higher_is_better: bool = True) -> int | None:
    """The first step whose metric is at least as good as `target`; None if the curve never gets there."""
    for step, value in curve:
        if (value >= target) if higher_is_better else (value <= target):
            return step
    return None


def fraction_to_reach(
    points: Sequence[tuple[float, float]], target: float, higher_is_better: bool = True
) -> float | None:
    """The smallest fraction of the training data whose converged metric reaches `target`, read off a curve.

    `points` are (data fraction, converged metric) pairs. Going up the fractions, at the first one that reaches
    `target` the fraction is interpolated linearly between it and the fraction below (which did not reach it).
    The smallest fraction measured is returned when it already reaches `target` (a bound: less data was not
    measured); None when no fraction does.
    """
    curve = sorted(points)
    fractions = [f for f, _ in curve]
    if not curve or len(set(fractions)) < len(fractions):
        raise ValueError(f"need one metric per data fraction, got fractions {fractions}")
    for i, (fraction, value) in enumerate(curve):
        if (value >= target) if higher_is_better else (value <= target):
            if i == 0 or not math.isfinite(curve[i - 1][1]):
                return fraction
            below, missed = curve[i - 1]
            return below + (fraction - below) * (missed - target) / (missed - value)
    return None


def forward_flops(model: nn.Module, example: torch.Tensor) -> int:
    """FLOPs of one forward pass of `model` on `example` (counted by torch's FlopCounterMode), in eval mode."""
    was_training = model.training
    model.eval()
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model(example)
    model.train(was_training)
    return counter.get_total_flops()


def step_flops(forward: float, batch_size: int, teacher_forward: float = 0.0) -> float:
    """FLOPs of one training step: forward + backward (~2x forward) of the model, plus the teacher's forward."""
    return batch_size * (3 * forward + teacher_forward)


@dataclass
class CostRatios:
    """Cost of learngene descendants over scratch's (below 1: the learngene is cheaper); None: not reached."""

    descendants: float | None  # descendants only: sum of their costs over scratch's
    total: float | None  # the aux net's distillation (the ancestry's forward included) + every descendant


def cost_ratios(
    descendants: Mapping[int, float | None], scratch: Mapping[int, float], aux: float
) -> CostRatios:
    """Ratios over the depths of `scratch`: each value is the cost of reaching scratch's plateau at that depth.

    A descendant that never reached the plateau (None) makes both ratios None: its cost is unbounded.
    """
    missing = set(scratch) - set(descendants)
    if missing:
        raise ValueError(f"no descendant cost for depth {sorted(missing)[0]}")
    costs = [descendants[d] for d in scratch]
    if any(c is None for c in costs):
        return CostRatios(None, None)
    spent, baseline = sum(costs), sum(scratch.values())  # type: ignore[arg-type]
    return CostRatios(spent / baseline, (aux + spent) / baseline)
