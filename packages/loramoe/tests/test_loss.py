"""The localised balancing constraint: hand-computed values, special cases, gradients, sum over modules."""

from __future__ import annotations

import statistics

import pytest
import torch

from learngene_core.errors import DataError
from loramoe import LoraMoEConfig, coefficients, cv_squared, get_loramoe_model, importance
from loramoe import localized_balancing_loss as lbc

# router weights of 2 samples x 3 tokens x 4 experts (each token sums to 1)
GATES = torch.tensor(
    [
        [[0.1, 0.2, 0.3, 0.4], [0.25, 0.25, 0.25, 0.25], [0.7, 0.1, 0.1, 0.1]],
        [[0.4, 0.4, 0.1, 0.1], [0.0, 0.5, 0.5, 0.0], [0.2, 0.3, 0.2, 0.3]],
    ]
)
GROUPS, TASK_GROUPS = [[0, 1], [2, 3]], [1, 0]  # task 0 -> experts 2,3; task 1 -> experts 0,1


def test_loss_equals_hand_computed_value():
    # Q by hand: sample 0 = [1.05, 0.55, 0.65, 0.75]; sample 1 = [0.6, 1.2, 0.8, 0.4]
    # sample 0 has task_type 0 (own experts 2, 3); sample 1 task_type 1 (own experts 0, 1); delta = 0.2
    z = [1.05 * 0.8, 0.55 * 0.8, 0.65 * 1.2, 0.75 * 1.2, 0.6 * 1.2, 1.2 * 1.2, 0.8 * 0.8, 0.4 * 0.8]
    expected = statistics.variance(z) / statistics.mean(z) ** 2
    loss = lbc(GATES, torch.tensor([0, 1]), GROUPS, TASK_GROUPS, delta=0.2)
    assert loss.item() == pytest.approx(expected, rel=1e-5)


def test_delta_zero_is_squared_cv_of_importance_and_scale_invariant():
    q = importance(GATES)
    expected = q.var() / q.mean() ** 2
    loss = lbc(GATES, torch.tensor([0, 1]), GROUPS, TASK_GROUPS, delta=0.0)
    torch.testing.assert_close(loss, expected)
    torch.testing.assert_close(cv_squared(3.0 * q), cv_squared(q))


def test_uniform_routing_closed_form():
    # uniform gates over N=4 experts, T=6 tokens: Z is (1 +- delta) * T / N, half of the entries each
    gates, delta = torch.full((2, 6, 4), 0.25), 0.3
    loss = lbc(gates, torch.tensor([0, 1]), GROUPS, TASK_GROUPS, delta=delta)
    z = [
        v * 1.5
        for v in [1 - delta, 1 - delta, 1 + delta, 1 + delta, 1 + delta, 1 + delta, 1 - delta, 1 - delta]
    ]
    assert loss.item() == pytest.approx(statistics.variance(z) / statistics.mean(z) ** 2, rel=1e-5)
    assert lbc(gates, torch.tensor([0, 1]), GROUPS, TASK_GROUPS, delta=0.0).item() == 0.0


def test_coefficients_follow_groups_and_reject_unknown_task_types():
    coeff = coefficients(torch.tensor([0, 1, 1]), GROUPS, TASK_GROUPS, 4, delta=0.1)
    torch.testing.assert_close(
        coeff, torch.tensor([[0.9, 0.9, 1.1, 1.1], [1.1, 1.1, 0.9, 0.9], [1.1, 1.1, 0.9, 0.9]])
    )
    with pytest.raises(DataError, match="task_type 2"):
        coefficients(torch.tensor([0, 2]), GROUPS, TASK_GROUPS, 4, delta=0.1)


def test_padding_mask_drops_padded_positions_from_importance():
    mask = torch.tensor([[1, 1, 0], [1, 1, 1]])
    q = importance(GATES, mask)
    torch.testing.assert_close(q[0], GATES[0, :2].sum(0))
    torch.testing.assert_close(q[1], GATES[1].sum(0))


def test_model_loss_is_weighted_sum_over_modules_and_reaches_routers(make_lm, ids):
    cfg = LoraMoEConfig(num_experts=4, rank=2, blc_weight=0.5, blc_alpha=0.1)
    model = get_loramoe_model(make_lm("llama"), cfg)
    task_types = torch.tensor([0, 1])
    with model.capturing() as gates:
        model(input_ids=ids)
    assert len(gates) == 6  # gate/up/down x 2 layers
    expected = 0.5 * sum(lbc(g, task_types, cfg.groups(), cfg.task_groups(), 0.1) for g in gates)
    out = model(input_ids=ids, labels=ids, task_types=task_types)
    torch.testing.assert_close(out.blc_loss, expected)
    torch.testing.assert_close(out.loss, out.lm_loss + out.blc_loss)
    out.blc_loss.backward()  # B = 0: only the balancing loss gives the routers a gradient
    for _, layer in model.loramoe_layers():
        assert layer.lora_router.weight.grad.abs().sum() > 0
        assert layer.last_gates is None  # nothing kept after the forward


def test_no_task_types_or_zero_weight_gives_exactly_zero(make_lm, ids):
    model = get_loramoe_model(make_lm("llama"), LoraMoEConfig(num_experts=2, rank=2, blc_weight=0.3))
    out = model(input_ids=ids, labels=ids)
    assert out.blc_loss.item() == 0.0 and torch.equal(out.loss, out.lm_loss)
    model.loramoe_config.blc_weight = 0.0
    out = model(input_ids=ids, labels=ids, task_types=torch.tensor([0, 1]))
    assert out.blc_loss.item() == 0.0 and torch.equal(out.loss, out.lm_loss)


@pytest.mark.parametrize("delta, closer_to_own", [(0.3, False), (-0.3, True)])
def test_optimising_the_constraint_moves_routing_as_the_formula_says(delta, closer_to_own):
    """Minimising Var(Z)/Mean(Z)^2 with Z = I * Q equalises Z, so Q_own / Q_other -> (1 - delta) / (1 + delta):
    delta > 0 moves router weight *away* from the sample's own group, delta < 0 towards it."""
    torch.manual_seed(0)
    logits = torch.zeros(4, 5, 4, requires_grad=True)  # 4 samples x 5 tokens x 4 experts, uniform start
    task_types = torch.tensor([0, 1, 0, 1])
    opt = torch.optim.SGD([logits], lr=5.0)
    for _ in range(200):
        opt.zero_grad()
        lbc(torch.softmax(logits, -1), task_types, GROUPS, TASK_GROUPS, delta).backward()
        opt.step()
    q = importance(torch.softmax(logits, -1)).detach()
    own = coefficients(task_types, GROUPS, TASK_GROUPS, 4, 0.5) > 1
    share = (q * own).sum() / q.sum()
    assert (share > 0.5) == closer_to_own
    ratio = (q * own).sum() / (q * ~own).sum()
    assert ratio.item() == pytest.approx((1 - delta) / (1 + delta), rel=0.02)
