"""Model-level behaviour of the options: `mask_padding` in the balancing loss and the experts' dropout."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from loramoe import LoraMoEConfig, get_loramoe_model

from .conftest import VOCAB


@pytest.mark.parametrize("mask_padding", [True, False])
def test_mask_padding_makes_the_balancing_loss_ignore_right_padding(make_lm, mask_padding):
    cfg = LoraMoEConfig(num_experts=4, rank=2, blc_weight=1.0, blc_alpha=0.1, mask_padding=mask_padding)
    model = get_loramoe_model(make_lm("llama"), cfg).eval()
    with torch.no_grad():
        for _, layer in model.loramoe_layers():
            layer.lora_router.weight.mul_(20)  # uneven routing, so padded positions change Q
    ids = torch.randint(1, VOCAB, (2, 6), generator=torch.Generator().manual_seed(2))
    padded = torch.cat([ids, torch.zeros(2, 3, dtype=torch.long)], 1)
    mask = torch.cat([torch.ones(2, 6, dtype=torch.long), torch.zeros(2, 3, dtype=torch.long)], 1)
    task_types = torch.tensor([0, 1])
    with torch.no_grad():
        plain = model(input_ids=ids, attention_mask=torch.ones_like(ids), task_types=task_types).blc_loss
        with_padding = model(input_ids=padded, attention_mask=mask, task_types=task_types).blc_loss
    assert plain > 0
    if mask_padding:  # causal LM, right padding: real positions route the same, padding is left out of Q
        torch.testing.assert_close(with_padding, plain)
    else:  # the reference: padded positions count in Q
        assert (with_padding - plain).abs() > 1e-3


def test_expert_dropout_acts_on_the_experts_input_in_training_only_and_never_on_the_router(make_lm, ids):
    cfg = LoraMoEConfig(num_experts=2, rank=2, dropout=0.5)
    model = get_loramoe_model(make_lm("llama"), cfg)
    without = get_loramoe_model(make_lm("llama"), replace(cfg, dropout=0.0))
    with torch.no_grad():
        for (_, layer), (_, twin) in zip(model.loramoe_layers(), without.loramoe_layers(), strict=True):
            layer.lora_B.normal_(std=0.5)  # experts that change the output
            twin.load_state_dict(layer.state_dict())
        torch.testing.assert_close(model.eval()(input_ids=ids).logits, without.eval()(input_ids=ids).logits)
        model.train()
        runs = []
        for seed in (0, 1):
            torch.manual_seed(seed)
            with model.capturing() as gates:
                logits = model(input_ids=ids).logits
            runs.append((logits, gates))
    (first, gates_a), (second, gates_b) = runs
    assert (first - second).abs().max() > 1e-3  # dropout masks differ between seeds: it is active
    # the first wrapped layer's input does not depend on any dropout: its router weights must not either
    torch.testing.assert_close(gates_a[0], gates_b[0], rtol=0, atol=0)
