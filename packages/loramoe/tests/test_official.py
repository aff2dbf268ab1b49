"""Official LoRAMoE adapters (one module per expert, `lora_route`, a torch pickle) import exactly and safely.

The official layout is built here from its description: for every wrapped linear `<name>` the keys
`base_model.model.<name>.lora_A{i}.weight` (r x d_in), `.lora_B{i}.weight` (d_out x r) and
`.lora_route.weight` (N x d_in), computing `base(x) + sum_i softmax(route x)_i B_i A_i x * alpha / r`.
"""

from __future__ import annotations

import json
import os

import pytest
import torch
from transformers import AutoModelForCausalLM, LlamaConfig

from learngene_core.errors import CheckpointError
from loramoe import LoraMoEModel, import_official_adapter, load_official_adapter
from loramoe.cli import main

RANK, EXPERTS, ALPHA = 2, 4, 8.0
TARGETS = ("gate_proj", "up_proj", "down_proj")


def official_state(model, seed=0):
    g = torch.Generator().manual_seed(seed)
    state = {}
    for name, module in model.named_modules():
        if name.rsplit(".", 1)[-1] not in TARGETS:
            continue
        prefix = f"base_model.model.{name}."
        for i in range(EXPERTS):
            state[f"{prefix}lora_A{i}.weight"] = torch.randn(RANK, module.in_features, generator=g) * 0.3
            state[f"{prefix}lora_B{i}.weight"] = torch.randn(module.out_features, RANK, generator=g) * 0.3
        state[f"{prefix}lora_route.weight"] = torch.randn(EXPERTS, module.in_features, generator=g)
    return state


def official_config():
    return {"peft_type": "LORA", "r": RANK, "lora_alpha": ALPHA, "lora_nums": EXPERTS, "lora_dropout": 0.05,
            "target_modules": ["gate_proj", "down_proj", "up_proj"], "blc_alpha": 0.0, "blc_weight": 0.0}  # fmt: skip


def write_official(directory, state, config=True):
    directory.mkdir(parents=True, exist_ok=True)
    torch.save(state, directory / "adapter_model.bin")
    if config:
        (directory / "adapter_config.json").write_text(json.dumps(official_config()))
    return directory


def hooked_reference(model, state):
    """`model` (a plain base) with each target's output + the official mixture, computed expert by expert."""
    for name, module in model.named_modules():
        if name.rsplit(".", 1)[-1] not in TARGETS:
            continue
        prefix = f"base_model.model.{name}."

        def hook(mod, args, out, prefix=prefix):
            x = args[0]
            gates = torch.softmax(x @ state[prefix + "lora_route.weight"].T, dim=-1)
            for i in range(EXPERTS):
                a, b = state[f"{prefix}lora_A{i}.weight"], state[f"{prefix}lora_B{i}.weight"]
                out = out + gates[..., i : i + 1] * (x @ a.T @ b.T) * (ALPHA / RANK)
            return out

        module.register_forward_hook(hook)
    return model


def test_imported_adapter_computes_the_official_mixture(make_lm, ids):
    state = official_state(make_lm("llama"))
    imported = load_official_adapter(make_lm("llama"), state, official_config())
    assert isinstance(imported, LoraMoEModel) and not imported.training
    cfg = imported.loramoe_config
    assert (cfg.num_experts, cfg.rank, cfg.alpha, cfg.dropout) == (EXPERTS, RANK, ALPHA, 0.05)
    assert len(imported.target_names) == 6  # 2 layers x gate/up/down
    with torch.no_grad():
        got = imported(input_ids=ids).logits
        expected = hooked_reference(make_lm("llama"), state)(input_ids=ids).logits
        assert (got - make_lm("llama")(input_ids=ids).logits).abs().max() > 1e-2  # the experts matter
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


def test_missing_expert_other_shapes_and_missing_alpha_are_named(make_lm, tmp_path):
    state = official_state(make_lm("llama"))
    broken = {k: v for k, v in state.items() if not k.endswith("layers.1.mlp.up_proj.lora_B3.weight")}
    with pytest.raises(CheckpointError, match=r"layers\.1\.mlp\.up_proj needs lora_route"):
        load_official_adapter(make_lm("llama"), broken, official_config())
    wide = {k: torch.cat([v, v], -1) if "lora_route" in k else v for k, v in state.items()}
    with pytest.raises(CheckpointError, match="lora_route has shape"):
        load_official_adapter(make_lm("llama"), wide, official_config())
    with pytest.raises(CheckpointError, match="--alpha"):
        import_official_adapter(make_lm("llama"), write_official(tmp_path / "bare", state, config=False))
    assert (
        import_official_adapter(make_lm("llama"), tmp_path / "bare", alpha=ALPHA).loramoe_config.alpha
        == ALPHA
    )


def test_a_pickle_that_would_run_code_is_refused_and_never_runs(make_lm, tmp_path):
    marker = tmp_path / "ran"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    write_official(tmp_path / "evil", {"x.lora_route.weight": torch.ones(1), "p": Payload()})
    with pytest.raises(CheckpointError, match="refused"):
        import_official_adapter(make_lm("llama"), tmp_path / "evil")
    assert not marker.exists()


def test_cli_writes_our_adapter_which_generate_and_from_pretrained_load(capsys, tmp_path):
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=257, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64)  # fmt: skip
    AutoModelForCausalLM.from_config(cfg).save_pretrained(tmp_path / "base")
    base = AutoModelForCausalLM.from_pretrained(tmp_path / "base")
    state = official_state(base)
    write_official(tmp_path / "official", state)
    out = tmp_path / "ours"
    assert main(["import-official", "--adapter", str(tmp_path / "official"), "--base", str(tmp_path / "base"),
                 "--output-dir", str(out)]) == 0  # fmt: skip
    assert "imported 6 layers x 4 experts (rank 2, alpha 8)" in capsys.readouterr().out
    ours = LoraMoEModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tmp_path / "base"), out)
    ids = torch.tensor([[5, 9, 200, 17]])
    with torch.no_grad():
        expected = hooked_reference(AutoModelForCausalLM.from_pretrained(tmp_path / "base"), state)(
            input_ids=ids
        )
        torch.testing.assert_close(ours(input_ids=ids).logits, expected.logits, atol=1e-5, rtol=1e-5)
    assert main(["generate", "--adapter", str(out), "--prompt", "hi", "--max-new-tokens", "2"]) == 0
    assert (
        main(
            [
                "import-official",
                "--adapter",
                str(tmp_path / "official"),
                "--base",
                str(tmp_path / "base"),
                "--output-dir",
                str(out),
            ]
        )
        == 2
    )  # fmt: skip  (never overwrites)
    assert main(["import-official", "--adapter", str(tmp_path / "nowhere"), "--base", str(tmp_path / "base"),
                 "--output-dir", str(tmp_path / "x")]) == 2  # fmt: skip
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("loramoe: error:") and "nowhere" in err[-1]


def test_cli_refuses_a_bad_adapter_file_before_loading_the_base_model(capsys, tmp_path, monkeypatch):
    """A 7B base takes minutes to load: a corrupt or empty adapter must be refused before that."""
    import loramoe.experiment

    def never(path):
        raise AssertionError(f"the base model {path} was loaded before the adapter was read")

    monkeypatch.setattr(loramoe.experiment, "load_causal_lm", never)
    (tmp_path / "base").mkdir()
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "adapter_model.bin").write_bytes(b"PK\x03\x04 truncated")
    for adapter, error in (("broken", "not a torch checkpoint"), ("base", "holds no adapter_model.bin")):
        argv = ["import-official", "--adapter", str(tmp_path / adapter), "--base", str(tmp_path / "base")]
        assert main([*argv, "--output-dir", str(tmp_path / "out")]) == 2
        assert error in capsys.readouterr().err
        assert not (tmp_path / "out").exists()
