"""The LoRAMoE layer: equals its base at init, equals the per-expert formula, top-k with k = N is dense."""

from __future__ import annotations

import pytest
import torch
from peft import LoraConfig, get_peft_model
from torch import nn

from learngene_core.errors import ModelError
from loramoe import LoraMoEConfig, LoraMoELayer, get_loramoe_model


def randomise(layer: LoraMoELayer, seed: int = 0) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        layer.lora_B.copy_(torch.randn(layer.lora_B.shape, generator=g) * 0.1)


def naive(layer: LoraMoELayer, x: torch.Tensor) -> torch.Tensor:
    """The paper's formula with a Python loop over experts."""
    gates = torch.softmax(layer.lora_router(x).float(), -1)
    out = layer.base_layer(x)
    for i in range(layer.num_experts):
        expert = (x @ layer.lora_A[i].T) @ layer.lora_B[i].T
        out = out + gates[..., i : i + 1] * expert * layer.scaling
    return out


@pytest.mark.parametrize("kind", ["llama", "gpt2"])
def test_wrapped_model_equals_base_at_init(make_lm, ids, kind):
    expected = make_lm(kind)(input_ids=ids).logits
    model = get_loramoe_model(make_lm(kind), LoraMoEConfig(num_experts=4, rank=2))
    assert len(model.target_names) == (4 if kind == "gpt2" else 6)
    assert torch.equal(model(input_ids=ids).logits, expected)


def test_batched_layer_equals_per_expert_loop():
    torch.manual_seed(0)
    layer = LoraMoELayer(nn.Linear(12, 10), num_experts=3, rank=2, alpha=4.0)
    randomise(layer)
    x = torch.randn(2, 5, 12)
    torch.testing.assert_close(layer(x), naive(layer, x), rtol=1e-5, atol=1e-6)


def test_gpt2_conv1d_layer_equals_formula(make_lm):
    base = make_lm("gpt2").transformer.h[0].mlp.c_fc
    layer = LoraMoELayer(base, num_experts=2, rank=3, alpha=6.0)
    randomise(layer)
    x = torch.randn(2, 4, 32)
    assert (layer.in_features, layer.out_features) == (32, 128)
    torch.testing.assert_close(layer(x), naive(layer, x), rtol=1e-5, atol=1e-6)


def test_single_expert_equals_peft_lora():
    torch.manual_seed(0)
    base = nn.Sequential(nn.Linear(16, 8))
    x = torch.randn(3, 16)
    lora = get_peft_model(base, LoraConfig(r=4, lora_alpha=8, target_modules=["0"], lora_dropout=0.0))
    peft_layer = lora.base_model.model[0]
    with torch.no_grad():
        peft_layer.lora_B["default"].weight.normal_()
    ours = LoraMoELayer(peft_layer.base_layer, num_experts=1, rank=4, alpha=8.0)
    with torch.no_grad():
        ours.lora_A.copy_(peft_layer.lora_A["default"].weight[None])
        ours.lora_B.copy_(peft_layer.lora_B["default"].weight[None])
    torch.testing.assert_close(ours(x), lora(x), rtol=1e-5, atol=1e-6)


def test_router_weights_sum_to_one_per_token():
    layer = LoraMoELayer(nn.Linear(8, 8), num_experts=5, rank=1, alpha=1.0)
    gates = layer.gates(torch.randn(3, 7, 8))
    assert gates.shape == (3, 7, 5)
    torch.testing.assert_close(gates.sum(-1), torch.ones(3, 7))


def test_topk_with_k_equal_n_is_exactly_dense():
    torch.manual_seed(0)
    dense = LoraMoELayer(nn.Linear(12, 10), num_experts=4, rank=2, alpha=4.0)
    randomise(dense)
    topk = LoraMoELayer(dense.base_layer, num_experts=4, rank=2, alpha=4.0, router="topk", top_k=4)
    topk.load_state_dict(dense.state_dict())
    x = torch.randn(2, 5, 12)
    assert torch.equal(topk(x), dense(x))


def test_topk_keeps_k_experts_per_token_renormalised():
    layer = LoraMoELayer(nn.Linear(12, 10), num_experts=6, rank=2, alpha=4.0, router="topk", top_k=2)
    x = torch.randn(4, 3, 12)
    gates = layer.gates(x)
    assert torch.equal((gates > 0).sum(-1), torch.full((4, 3), 2))
    torch.testing.assert_close(gates.sum(-1), torch.ones(4, 3))
    dense = torch.softmax(layer.lora_router(x), -1)
    top = dense.topk(2, -1)
    torch.testing.assert_close(gates.gather(-1, top.indices), top.values / top.values.sum(-1, keepdim=True))


def test_unsupported_module_is_a_model_error():
    with pytest.raises(ModelError, match="Embedding"):
        LoraMoELayer(nn.Embedding(4, 4), num_experts=2, rank=1, alpha=1.0)
