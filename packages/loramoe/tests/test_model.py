"""Injection and adapter lifecycle: targets, freezing, save/load, disable, unload, generate."""

from __future__ import annotations

import json

import pytest
import torch

from learngene_core.errors import CheckpointError, ModelError
from loramoe import LoraMoEConfig, LoraMoEModel, get_loramoe_model
from loramoe.experiment import enable_checkpointing


def trained(model: LoraMoEModel, ids: torch.Tensor, steps: int = 3) -> LoraMoEModel:
    """A few AdamW steps on the LM + balancing loss, so experts and routers move away from init."""
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    model.train()
    for _ in range(steps):
        opt.zero_grad()
        model(input_ids=ids, labels=ids, task_types=torch.tensor([0, 1])).loss.backward()
        opt.step()
    return model.eval()


def test_default_targets_are_the_ffn_projections(make_lm):
    llama = get_loramoe_model(make_lm("llama"), LoraMoEConfig(num_experts=2, rank=1))
    assert {n.rsplit(".", 1)[1] for n in llama.target_names} == {"gate_proj", "up_proj", "down_proj"}
    gpt2 = get_loramoe_model(make_lm("gpt2"), LoraMoEConfig(num_experts=2, rank=1))
    assert gpt2.target_names == [f"transformer.h.{i}.mlp.{n}" for i in (0, 1) for n in ("c_fc", "c_proj")]


def test_targets_by_suffix_list_and_by_regex(make_lm):
    by_list = get_loramoe_model(make_lm(), LoraMoEConfig(num_experts=2, rank=1, target_modules=["q_proj"]))
    assert by_list.target_names == ["model.layers.0.self_attn.q_proj", "model.layers.1.self_attn.q_proj"]
    regex = r"model\.layers\.1\.mlp\.(up|down)_proj"
    by_regex = get_loramoe_model(make_lm(), LoraMoEConfig(num_experts=2, rank=1, target_modules=regex))
    assert by_regex.target_names == ["model.layers.1.mlp.up_proj", "model.layers.1.mlp.down_proj"]


def test_unmatched_targets_error_lists_candidates(make_lm):
    with pytest.raises(ModelError, match="ffn_in.*candidates: .*gate_proj.*q_proj"):
        get_loramoe_model(make_lm(), LoraMoEConfig(num_experts=2, rank=1, target_modules=["ffn_in"]))


def test_only_experts_and_routers_train_and_base_stays_bit_identical(make_lm, ids):
    reference = make_lm().state_dict()
    model = get_loramoe_model(make_lm(), LoraMoEConfig(num_experts=4, rank=2))
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert {n.removeprefix("model.") for n in trainable} == set(model.adapter_state_dict())
    assert all(
        n.rsplit(".", 1)[-1] in ("lora_A", "lora_B") or n.endswith("lora_router.weight") for n in trainable
    )
    trained(model, ids)
    for key, tensor in model.base_state_dict().items():
        assert torch.equal(tensor, reference[key]), key
    assert any(layer.lora_B.abs().sum() > 0 for _, layer in model.loramoe_layers())


def test_save_load_round_trip_gives_the_same_logits(make_lm, ids, tmp_path):
    cfg = LoraMoEConfig(num_experts=4, rank=2, router="topk", top_k=2)
    model = trained(get_loramoe_model(make_lm("gpt2"), cfg), ids)
    model.save_pretrained(tmp_path / "adapter")
    files = sorted(p.name for p in (tmp_path / "adapter").iterdir())
    assert files == ["adapter_config.json", "adapter_model.safetensors"]
    saved = json.loads((tmp_path / "adapter" / "adapter_config.json").read_text())
    assert saved["method"] == "loramoe" and saved["top_k"] == 2
    loaded = LoraMoEModel.from_pretrained(make_lm("gpt2"), tmp_path / "adapter")
    assert torch.equal(loaded(input_ids=ids).logits, model(input_ids=ids).logits)
    assert not loaded.training and not any(p.requires_grad for p in loaded.parameters())
    n_adapter = sum(t.numel() for t in model.adapter_state_dict().values())
    assert n_adapter == sum(p.numel() for p in model.parameters() if p.requires_grad)


def test_loading_onto_another_architecture_is_a_checkpoint_error(make_lm, tmp_path):
    get_loramoe_model(make_lm("llama"), LoraMoEConfig(num_experts=2, rank=1, target_modules=["q_proj"])
                      ).save_pretrained(tmp_path / "a")  # fmt: skip
    with pytest.raises((CheckpointError, ModelError), match="q_proj"):
        LoraMoEModel.from_pretrained(make_lm("gpt2"), tmp_path / "a")
    with pytest.raises(CheckpointError, match="adapter_config.json"):
        LoraMoEModel.from_pretrained(make_lm("gpt2"), tmp_path / "missing")


def test_disabled_adapters_give_the_base_output(make_lm, ids):
    expected = make_lm()(input_ids=ids).logits
    model = trained(get_loramoe_model(make_lm(), LoraMoEConfig(num_experts=4, rank=2)), ids)
    assert not torch.equal(model(input_ids=ids).logits, expected)
    with model.disable_adapter():
        assert torch.equal(model(input_ids=ids).logits, expected)
    assert not torch.equal(model(input_ids=ids).logits, expected)


def test_unload_restores_the_original_modules(make_lm, ids):
    expected = make_lm()(input_ids=ids).logits
    model = trained(get_loramoe_model(make_lm(), LoraMoEConfig(num_experts=2, rank=2)), ids)
    base = model.unload()
    assert type(base.model.layers[0].mlp.gate_proj).__name__ == "Linear"
    assert torch.equal(base(input_ids=ids).logits, expected)


@pytest.mark.parametrize("training", [True, False])
def test_generate_needs_no_task_types_keeps_mode_and_captures_nothing(make_lm, ids, training):
    model = get_loramoe_model(make_lm(), LoraMoEConfig(num_experts=2, rank=2))
    model.train(training)
    out = model.generate(input_ids=ids[:, :4], max_new_tokens=5, do_sample=False, pad_token_id=0,
                         task_types=torch.tensor([0, 1]))  # fmt: skip
    assert out.shape == (2, 9)
    assert model.training == training and all(m.training == training for m in model.modules())
    assert all(layer.last_gates is None and not layer.capture for _, layer in model.loramoe_layers())


def test_print_trainable_parameters(make_lm, capsys):
    model = get_loramoe_model(make_lm(), LoraMoEConfig(num_experts=4, rank=2))
    model.print_trainable_parameters()
    trainable, total = model.get_nb_trainable_parameters()
    # per layer: A (4*2*d_in) + B (4*d_out*2) + router (4*d_in); gate/up: 32->64, down: 64->32; 2 layers
    per_layer = sum(8 * i + 8 * o + 4 * i for i, o in [(32, 64), (32, 64), (64, 32)])
    assert trainable == 2 * per_layer
    assert f"trainable params: {trainable:,} || all params: {total:,}" in capsys.readouterr().out


def test_balancing_gradient_is_the_same_under_gradient_checkpointing(make_lm, ids):
    grads = []
    for checkpointing in (False, True):
        base = make_lm()
        if checkpointing:
            enable_checkpointing(base)
        model = get_loramoe_model(base, LoraMoEConfig(num_experts=4, rank=2, dropout=0.0)).train()
        model(input_ids=ids, labels=ids, task_types=torch.tensor([1, 0])).loss.backward()
        grads.append(
            torch.cat([layer.lora_router.weight.grad.flatten() for _, layer in model.loramoe_layers()])
        )
    assert grads[0].abs().sum() > 0
    torch.testing.assert_close(grads[1], grads[0])
