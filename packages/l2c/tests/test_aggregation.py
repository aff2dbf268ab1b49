"""Identities of L2C's inference: top-1 is hard selection, uniform top-T is the ensemble, grouped is the naive loop."""

from __future__ import annotations

import pytest
import torch

from l2c.aggregate import expert_name
from l2c.classifier import task_scores


def test_experts_really_differ(predictor, images):
    outputs = [predictor.pool.features(images, expert_name(t)) for t in range(predictor.tasks)]
    assert not torch.allclose(outputs[0], outputs[1], atol=1e-3)
    assert predictor.task_weights(images).argmax(1).unique().numel() > 1  # samples go to different experts


def test_task_weights_are_softmax_of_per_task_max_logits(predictor, images):
    logits = predictor.selector_head(predictor.pool.features(images, "selector"))
    expected = torch.stack(
        [logits[:, 2 * k : 2 * k + 2].max(1).values for k in range(predictor.tasks)], 1
    ).softmax(1)
    torch.testing.assert_close(predictor.task_weights(images), expected)
    assert task_scores(logits, predictor.offsets, 2).shape == (len(images), 2)


def test_top1_aggregation_equals_hard_selection(predictor, images):
    assert torch.equal(predictor.predict(images, 1), predictor.hard_selection(images))


def test_uniform_selector_top_all_equals_the_plain_ensemble(predictor, images):
    tasks = predictor.tasks
    uniform = torch.full((len(images), tasks), 1.0 / tasks)
    mixed = predictor.predict_proba(images, tasks, weights=uniform)
    torch.testing.assert_close(mixed, predictor.ensemble(images), atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("k", [1, 2, 3])
def test_grouped_inference_equals_the_naive_loop(predictor, images, k):
    grouped = predictor.predict_proba(images, k, grouped=True)
    naive = predictor.predict_proba(images, k, grouped=False)
    torch.testing.assert_close(grouped, naive, atol=1e-5, rtol=1e-5)
    assert torch.equal(grouped.argmax(1), naive.argmax(1))


def test_each_sample_is_predicted_from_itself_alone(predictor, images):
    batch = predictor.predict_proba(images, 2)
    alone = torch.cat([predictor.predict_proba(images[i : i + 1], 2) for i in range(len(images))])
    torch.testing.assert_close(batch, alone, atol=1e-5, rtol=1e-5)
    shuffled = torch.randperm(len(images), generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(
        predictor.predict_proba(images[shuffled], 2), batch[shuffled], atol=1e-5, rtol=1e-5
    )


def test_topk_mixture_sums_the_selected_weights(predictor, images):
    g = predictor.task_weights(images)
    total = predictor.predict_proba(images, 2).sum(1)
    torch.testing.assert_close(total, g.topk(2, 1).values.sum(1))


def test_cooperation_loss_trains_only_the_new_expert_and_the_head(predictor, images):
    from l2c.classifier import AdapterClassifier, TaskLoss
    from l2c.cooperation import CooperationLoss

    pool, head = predictor.pool, predictor.expert_head
    pool.activate(expert_name(2))
    model = AdapterClassifier(pool, expert_name(2), head, predictor.seen)
    targets = torch.arange(len(images)) % predictor.seen
    base = TaskLoss(4, 6, mask=False)
    loss, _, parts = CooperationLoss(base, predictor, task=2, k=2, weight=0.5)(model, images, targets)
    plain, _, _ = base(model, images, targets)
    torch.testing.assert_close(loss, plain + 0.5 * parts["cooperation"])
    loss.backward()
    assert all(p.requires_grad and p.grad is not None for p in pool.adapter_parameters(expert_name(2)))
    others = [
        p for name in ("selector", expert_name(0), expert_name(1)) for p in pool.adapter_parameters(name)
    ]
    assert all(p.grad is None for p in others)
    assert head.weight.grad is not None and head.weight.grad.abs().sum() > 0
