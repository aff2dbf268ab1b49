"""The numbers behind the learngene benchmarks, on hand-written curves: plateau, steps to reach, data fraction to
reach, cost ratios."""

from __future__ import annotations

import pytest
import timm
import torch
from torch import nn

from learngene_core.learngene.cost import (
    CostRatios,
    cost_ratios,
    forward_flops,
    fraction_to_reach,
    plateau,
    step_flops,
    steps_to_reach,
)
from learngene_core.learngene.descendants import depth_rows, format_table

SCRATCH = [(10, 0.2), (20, 0.5), (30, 0.7), (40, 0.78), (50, 0.8), (60, 0.82), (70, 0.79), (80, 0.81)]


def test_plateau_is_the_mean_of_the_last_quarter_of_evaluations():
    assert plateau(SCRATCH) == pytest.approx((0.79 + 0.81) / 2)
    assert plateau(SCRATCH, tail=0.5) == pytest.approx((0.8 + 0.82 + 0.79 + 0.81) / 4)
    assert plateau([(5, 0.3)]) == 0.3  # at least one evaluation
    assert plateau(SCRATCH[:3], tail=0.25) == 0.7  # ceil(3 / 4) = 1 evaluation
    with pytest.raises(ValueError, match="empty"):
        plateau([])


def test_steps_to_reach_is_the_first_step_at_least_as_good_as_the_target():
    target = plateau(SCRATCH)  # 0.80
    assert steps_to_reach(SCRATCH, target) == 50  # 0.8 >= 0.8: reaching counts, not only passing
    learngene = [(10, 0.6), (20, 0.81), (30, 0.7)]
    assert steps_to_reach(learngene, target) == 20  # the first crossing, even if it falls back
    assert steps_to_reach([(10, 0.5), (20, 0.79)], target) is None
    losses = [(10, 2.0), (20, 1.1), (30, 0.9)]
    assert steps_to_reach(losses, 1.0, higher_is_better=False) == 30
    assert steps_to_reach([], 0.5) is None


def test_cost_ratios_descendants_only_and_with_the_aux_charged():
    scratch = {2: 100.0, 4: 300.0}  # FLOPs each scratch descendant spent to reach its plateau
    ratios = cost_ratios({2: 40.0, 4: 60.0}, scratch, aux=200.0)
    assert ratios == CostRatios(descendants=100 / 400, total=300 / 400)
    assert cost_ratios({2: 40.0, 4: 60.0}, scratch, aux=500.0).total == pytest.approx(1.5)  # aux can lose it
    assert cost_ratios({2: 40.0, 4: None}, scratch, aux=0.0) == CostRatios(None, None)  # never reached
    with pytest.raises(ValueError, match="depth 4"):
        cost_ratios({2: 40.0}, scratch, aux=0.0)


def test_step_flops_charges_backward_twice_the_forward_and_the_teacher_forward():
    assert step_flops(10.0, batch_size=4) == 120.0
    assert step_flops(10.0, batch_size=4, teacher_forward=5.0) == 140.0


def test_forward_flops_of_a_linear_layer_is_two_multiply_adds_per_weight():
    assert forward_flops(nn.Linear(8, 3), torch.zeros(1, 8)) == 2 * 8 * 3


def test_forward_flops_grow_with_vit_depth():
    def vit(depth: int) -> nn.Module:
        return timm.create_model(
            "vit_tiny_patch16_224", pretrained=False, img_size=16, patch_size=4, embed_dim=32, num_heads=2,
            depth=depth, in_chans=1, num_classes=3, class_token=False, global_pool="avg",
        )  # fmt: skip

    x = torch.zeros(1, 1, 16, 16)
    one, two, four = (forward_flops(vit(d), x) for d in (1, 2, 4))
    assert four - two == 2 * (two - one) > 0  # every block costs the same


def test_compare_rows_count_epochs_to_scratchs_final_value():
    curves = {  # (val curve per epoch, final test value, parameters)
        "scratch": ([0.2, 0.6, 0.75, 0.7], 0.71, 100),  # its final val value 0.7 is the target
        "learngene": ([0.5, 0.72, 0.69, 0.8], 0.8, 100),
    }
    rows = {r.init: r for r in depth_rows(4, "accuracy", curves)}
    assert rows["learngene"].epochs_to_scratch_final == 2  # 0.72 >= 0.7 at epoch 2, counted from 1
    assert rows["scratch"].epochs_to_scratch_final == 3  # scratch passed its own final value at epoch 3
    assert rows["learngene"].first_epoch_val == 0.5 and rows["learngene"].final_test == 0.8
    never = {"scratch": curves["scratch"], "learngene": ([0.1, 0.3, 0.5, 0.6], 0.5, 100)}
    assert {r.init: r.epochs_to_scratch_final for r in depth_rows(4, "accuracy", never)}["learngene"] is None
    losses = {"scratch": ([3.0, 2.0, 1.5], 1.6, 100), "learngene": ([2.5, 1.4, 1.2], 1.3, 100)}
    loss_rows = {r.init: r for r in depth_rows(2, "loss", losses, higher_is_better=False)}
    assert loss_rows["learngene"].epochs_to_scratch_final == 2  # 1.4 <= 1.5: lower is better for a loss
    table = format_table([*depth_rows(4, "accuracy", curves), *depth_rows(4, "accuracy", never)][1::2], 4)
    assert "| 4 | learngene | 100 | 0.500 | 0.800 | 2/4 |" in table
    assert "| 4 | learngene | 100 | 0.100 | 0.500 | not in 4 |" in table


LOSS_BY_FRACTION = [(1.0, 3.0), (0.25, 3.6), (0.5, 3.2), (0.75, 3.05)]  # unsorted on purpose


def test_fraction_to_reach_interpolates_between_the_fractions_around_the_first_crossing():
    # 3.1 lies between 0.5 (3.2, misses) and 0.75 (3.05, reaches): 0.5 + 0.25 * (3.2 - 3.1) / (3.2 - 3.05)
    assert fraction_to_reach(LOSS_BY_FRACTION, 3.1, higher_is_better=False) == pytest.approx(
        0.5 + 0.25 * 2 / 3
    )
    # reached exactly at a measured point: no interpolation
    assert fraction_to_reach(LOSS_BY_FRACTION, 3.2, higher_is_better=False) == 0.5
    assert fraction_to_reach(LOSS_BY_FRACTION, 3.0, higher_is_better=False) == 1.0
    accuracy = [(f, -loss) for f, loss in LOSS_BY_FRACTION]
    assert fraction_to_reach(accuracy, -3.1) == pytest.approx(0.5 + 0.25 * 2 / 3)


def test_fraction_to_reach_takes_the_first_crossing_and_bounds_or_refuses_the_rest():
    noisy = [(0.25, 3.6), (0.5, 3.0), (0.75, 3.3), (1.0, 2.9)]  # reaches at 0.5, misses at 0.75
    assert fraction_to_reach(noisy, 3.1, higher_is_better=False) == pytest.approx(0.25 + 0.25 * 5 / 6)
    assert fraction_to_reach(LOSS_BY_FRACTION, 4.0, higher_is_better=False) == 0.25  # the smallest measured
    assert fraction_to_reach(LOSS_BY_FRACTION, 2.5, higher_is_better=False) is None  # never reached
    diverged = [(0.25, float("nan")), (0.5, 3.0)]
    assert fraction_to_reach(diverged, 3.1, higher_is_better=False) == 0.5  # nothing to interpolate from
    with pytest.raises(ValueError, match="one metric per data fraction"):
        fraction_to_reach([(0.5, 3.0), (0.5, 3.1)], 3.0)
    with pytest.raises(ValueError, match="one metric per data fraction"):
        fraction_to_reach([], 3.0)
