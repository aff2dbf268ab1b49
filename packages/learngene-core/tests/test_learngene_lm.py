"""The shared learngene machinery on Hugging Face decoder LMs (Llama-style `model.layers`, GPT-2 `transformer.h`).

Exercised through a toy method defined here (layer i = base + layout[i] * delta over whatever tensors a layer
has), so nothing from a method package is imported. Models are built offline from configs.
"""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import nn
from transformers import AutoModelForCausalLM

from learngene_core import experiment
from learngene_core.config import ExperimentConfig, from_dict
from learngene_core.errors import ConfigError
from learngene_core.learngene import (
    AuxNet,
    Learngene,
    LearngeneMethod,
    backbone_named,
    backbone_of,
    build_descendant,
    expand,
)
from learngene_core.learngene.methods import fresh_block_tensor
from learngene_core.testing import LM_DEPTH_KEY, LM_LAYERS, TINY_VOCAB, tiny_lm_config

pytestmark = pytest.mark.usefixtures("single_thread")

AUX_DEPTH = 4
INHERITED = {
    "llama": {"model.embed_tokens.weight", "model.norm.weight", "lm_head.weight"},
    "gpt2": {
        "transformer.wte.weight",
        "transformer.wpe.weight",
        "transformer.ln_f.weight",
        "transformer.ln_f.bias",
        "lm_head.weight",
    },
}


class ShiftMethod(LearngeneMethod):
    """A toy learngene: `base.*` and `delta.*` per layer tensor; layer i = base + layout[i] * delta."""

    name = "shift"
    formula = "layer i = base + layout[i] * delta"

    def parse_spec(self, data: dict[str, Any]) -> dict[str, Any]:
        return {"depth": int(data.get("depth", AUX_DEPTH))}

    def init_tensors(self, block: nn.Module, spec: dict[str, Any]) -> dict[str, torch.Tensor]:
        gen = torch.Generator().manual_seed(7)
        tensors = {}
        for name, param in block.named_parameters():
            tensors[f"base.{name}"] = param.detach().clone() + 0.05 * torch.randn(param.shape, generator=gen)
            tensors[f"delta.{name}"] = 0.05 * torch.randn(param.shape, generator=gen)
        return tensors

    def aux_layout(self, spec: dict[str, Any]) -> list[int]:
        return list(range(spec["depth"]))

    def default_layout(self, depth: int, spec: dict[str, Any]) -> list[int]:
        return list(range(depth))

    def layer_tensors(self, tensors, layer, layout, spec):
        k = layout[layer]
        names = [n.removeprefix("base.") for n in tensors if n.startswith("base.")]
        return {n: tensors[f"base.{n}"] + k * tensors[f"delta.{n}"] for n in names}


METHOD = ShiftMethod()
SPEC = METHOD.parse_spec({"depth": AUX_DEPTH})


def make_lm(kind: str, depth: int = AUX_DEPTH, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    config = tiny_lm_config(kind, depth)
    model = AutoModelForCausalLM.from_config(config)
    with torch.no_grad():  # norms start at 1 (and 0): make copies distinguishable
        for name, param in model.named_parameters():
            if not name.startswith(LM_LAYERS[kind]):
                param.add_(0.1 * torch.randn_like(param))
    return model.eval()


def make_learngene(kind: str, seed: int = 0) -> tuple[Learngene, AuxNet]:
    """A learngene as extraction saves it, from an (untrained) aux LM of the toy method."""
    template = make_lm(kind, seed=seed)
    aux = AuxNet(template, METHOD, SPEC)
    backbone = aux.backbone
    state = template.state_dict()
    tensors = {k: v.detach().clone() for k, v in aux.learngene_tensors().items()}
    tensors.update({f"inherited.{n}": state[n].clone() for n in backbone.inherited_names(template)})
    manifest = {
        "method": METHOD.name,
        "backbone": backbone.name,
        "arch": backbone.arch(template),
        "spec": SPEC,
        "aux_layout": aux.layout,
        "num_classes": None,
    }
    return Learngene(tensors, manifest), aux


def tokens(n: int = 2, length: int = 12, seed: int = 1) -> torch.Tensor:
    return torch.randint(TINY_VOCAB, (n, length), generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("kind", ["llama", "gpt2"])
def test_backbone_anatomy_of_llama_and_gpt2(kind):
    model = make_lm(kind)
    backbone = backbone_of(model)
    assert backbone.name == "hf-causal-lm" and backbone_named("hf-causal-lm") is backbone
    assert backbone.layers_path(model) == LM_LAYERS[kind]
    assert len(backbone.layers(model)) == AUX_DEPTH
    assert set(backbone.inherited_names(model)) == INHERITED[kind]
    assert backbone.head_names(model) == ()
    arch = backbone.arch(model)
    assert arch["model_type"] == kind and LM_DEPTH_KEY[kind] not in arch and "num_hidden_layers" not in arch
    rebuilt = backbone.create(arch, 2)
    assert len(backbone.layers(rebuilt)) == 2
    assert rebuilt.config.vocab_size == TINY_VOCAB and rebuilt.config.hidden_size == 32


def test_old_manifest_without_backbone_means_timm_vit():
    assert Learngene({}, {"method": "x", "arch": {}, "spec": {}}).backbone == "timm-vit"
    assert backbone_named(None).name == "timm-vit"


@pytest.mark.parametrize(
    ("name", "shape", "kind"),
    [
        ("input_layernorm.weight", (32,), "ones"),
        ("post_attention_layernorm.weight", (32,), "ones"),
        ("ln_1.weight", (32,), "ones"),
        ("ln_2.bias", (32,), "zeros"),
        ("norm1.weight", (32,), "ones"),
        ("attn.c_attn.weight", (32, 96), "normal"),  # GPT-2 Conv1D
        ("attn.c_attn.bias", (96,), "zeros"),
        ("self_attn.q_proj.weight", (32, 32), "normal"),
    ],
)
def test_fresh_block_tensor_recognises_norms_of_vits_and_lms(name, shape, kind):
    torch.manual_seed(0)
    out = fresh_block_tensor(name, torch.empty(shape))
    if kind == "ones":
        assert torch.equal(out, torch.ones(shape))
    elif kind == "zeros":
        assert torch.equal(out, torch.zeros(shape))
    else:
        assert 0.015 < out.std() < 0.025 and abs(out.mean()) < 0.005


@pytest.mark.parametrize("kind", ["llama", "gpt2"])
def test_aux_lm_forward_equals_hf_model_loaded_with_generated_layers(kind):
    template = make_lm(kind)
    aux = AuxNet(template, METHOD, SPEC).eval()
    plain = AutoModelForCausalLM.from_config(template.config)
    state = {k: v for k, v in template.state_dict().items() if not k.startswith(LM_LAYERS[kind])}
    state.update(aux.generated_state())
    plain.load_state_dict(state, strict=True)
    x = tokens()
    with torch.no_grad():
        out, expected = aux(input_ids=x).logits, plain.eval()(input_ids=x).logits
        placeholders = template(input_ids=x).logits
    assert out.shape == (2, 12, TINY_VOCAB)
    assert torch.allclose(out, expected, atol=1e-6, rtol=1e-5)
    assert not torch.allclose(out, placeholders, atol=1e-3)


@pytest.mark.parametrize("kind", ["llama", "gpt2"])
def test_aux_lm_gradients_reach_the_learngene_only(kind):
    aux = AuxNet(make_lm(kind), METHOD, SPEC)
    x = tokens()
    aux(input_ids=x).logits.sum().backward()
    assert all(p.grad is not None for p in aux.learngene.parameters())
    assert all(p.grad is None for p in aux.backbone.layers(aux.template).parameters())


@pytest.mark.parametrize("kind", ["llama", "gpt2"])
@pytest.mark.parametrize("depth", [2, 8])
def test_expand_lm_generates_layers_copies_the_rest_and_loads_strictly(kind, depth):
    lg, _ = make_learngene(kind)
    layout = list(range(depth))
    model, inheritance = expand(lg, METHOD, layout)
    assert type(model).__name__ == {"llama": "LlamaForCausalLM", "gpt2": "GPT2LMHeadModel"}[kind]
    prefix = LM_LAYERS[kind]
    layer_names = [n for n, _ in make_lm(kind, depth=1).get_submodule(prefix)[0].named_parameters()]
    state = model.state_dict()
    for i in range(depth):
        for n in layer_names:
            expected = lg.tensors[f"base.{n}"] + i * lg.tensors[f"delta.{n}"]
            assert torch.equal(state[f"{prefix}.{i}.{n}"], expected), (i, n)
            assert inheritance[f"{prefix}.{i}.{n}"] == "expanded"
    for n in INHERITED[kind]:
        assert inheritance[n] == "copied"
        assert torch.equal(state[n], lg.tensors[f"inherited.{n}"])
    assert set(inheritance.values()) == {"expanded", "copied"}
    # a user with transformers alone: from_config + strict load
    config = tiny_lm_config(kind, depth)
    plain = AutoModelForCausalLM.from_config(config)
    plain.load_state_dict(state, strict=True)
    x = tokens()
    with torch.no_grad():
        assert torch.equal(plain.eval()(input_ids=x).logits, model.eval()(input_ids=x).logits)


@pytest.mark.parametrize("kind", ["llama", "gpt2"])
def test_expand_lm_at_aux_layout_reproduces_the_aux_net(kind):
    lg, aux = make_learngene(kind)
    model, _ = expand(lg, METHOD, aux.layout)
    x = tokens()
    with torch.no_grad():
        assert torch.allclose(model.eval()(input_ids=x).logits, aux.eval()(input_ids=x).logits, atol=1e-6)


def test_lm_learngene_round_trips_and_refuses_other_width(tmp_path):
    lg, _ = make_learngene("llama")
    lg.save(tmp_path / "lg")
    back = Learngene.load(tmp_path / "lg", method="shift")
    assert back.backbone == "hf-causal-lm" and back.manifest == lg.manifest
    model, _ = expand(back, METHOD, [0, 1])
    assert model.config.num_hidden_layers == 2
    back.check_model_kwargs({"hidden_size": 32, "num_hidden_layers": 9}, "model.kwargs")
    with pytest.raises(ConfigError, match="hidden_size"):
        back.check_model_kwargs({"hidden_size": 48}, "model.kwargs")


# the dropout keys of each LM config (its regularisation keys), and how many dropout modules a 2-layer model has
DROPOUT_KEYS = {"llama": ("attention_dropout",), "gpt2": ("resid_pdrop", "embd_pdrop", "attn_pdrop")}


@pytest.mark.parametrize("kind", ["llama", "gpt2"])
def test_lm_regularisation_keys_are_the_configs_dropouts(kind):
    lg, _ = make_learngene(kind)
    keys = lg.regularisation_keys()
    assert set(DROPOUT_KEYS[kind]) <= set(keys)
    assert not {"hidden_size", "n_embd", "vocab_size", "num_attention_heads", "n_head"} & set(keys)


def lm_run(kind: str, kwargs: dict[str, Any]) -> experiment.Run:
    data = {"name": "synthetic-text", "seq_len": 8, "batch_size": 4,
            "options": {"vocab_size": TINY_VOCAB, "num_samples": 20}}  # fmt: skip
    cfg = from_dict(
        ExperimentConfig, {"model": {"source": "hf", "name": kind, "kwargs": kwargs}, "data": data}
    )
    return experiment.prepare_run(cfg)


@pytest.mark.parametrize("init", ["learngene", "scratch"])
@pytest.mark.parametrize("kind", ["llama", "gpt2"])
def test_lm_dropout_kwargs_reach_learngene_and_scratch_descendants(kind, init):
    lg, _ = make_learngene(kind)
    rates = {key: 0.2 + 0.1 * i for i, key in enumerate(DROPOUT_KEYS[kind])}
    model, _ = build_descendant(init, lg, METHOD, [0, 1], lm_run(kind, rates))
    assert {key: getattr(model.config, key) for key in rates} == pytest.approx(rates)
    layer = backbone_of(model).layers(model)[1]
    if kind == "gpt2":  # GPT-2 builds nn.Dropout modules from the config
        assert model.transformer.drop.p == pytest.approx(rates["embd_pdrop"])
        assert layer.attn.attn_dropout.p == pytest.approx(rates["attn_pdrop"])
        assert layer.attn.resid_dropout.p == pytest.approx(rates["resid_pdrop"])
    else:  # Llama reads the rate in its attention's forward
        assert layer.self_attn.attention_dropout == pytest.approx(rates["attention_dropout"])
    if init == "learngene":  # same tensors as with the defaults (GPT-2: 0.1, Llama: 0): only training differs
        plain, _ = build_descendant(init, lg, METHOD, [0, 1], lm_run(kind, {}))
        assert all(
            torch.equal(a, b) for a, b in zip(plain.state_dict().values(), model.state_dict().values())
        )
        assert getattr(plain.config, DROPOUT_KEYS[kind][0]) != getattr(model.config, DROPOUT_KEYS[kind][0])


@pytest.mark.parametrize(
    ("kind", "kwargs", "message"),
    [
        (
            "llama",
            {"drop_path_rate": 0.1},
            r"model\.kwargs\.drop_path_rate: a language-model .* attention_dropout",
        ),
        ("llama", {"rope_theta": 500.0}, r"model\.kwargs\.rope_theta: .* takes only attention_dropout$"),
        ("gpt2", {"drop_rate": 0.1}, r"model\.kwargs\.drop_rate: .*resid_pdrop, embd_pdrop"),
        ("gpt2", {"n_inner": 64}, "n_inner=64 but the shift learngene has n_inner=None"),
        ("llama", {"hidden_size": 48}, "hidden_size=48 but the shift learngene has hidden_size=32"),
        ("gpt2", {"n_embd": 64, "resid_pdrop": 0.1}, "n_embd=64 but the shift learngene has n_embd=32"),
    ],
)
def test_lm_descendant_shape_kwargs_are_one_clear_error(kind, kwargs, message):
    lg, _ = make_learngene(kind)
    with pytest.raises(ConfigError, match=message) as info:
        build_descendant("scratch", lg, METHOD, [0, 1], lm_run(kind, kwargs))
    assert "\n" not in str(info.value)


def test_lm_descendant_kwargs_equal_to_the_learngenes_own_are_accepted_and_change_nothing():
    lg, _ = make_learngene("llama")
    assert lg.descendant_model_kwargs({"hidden_size": lg.arch["hidden_size"]}, "model.kwargs") == {}
