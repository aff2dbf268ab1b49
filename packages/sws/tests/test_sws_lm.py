"""SWS on Hugging Face decoder LMs: every layer of a stage is a bitwise copy of that stage's shared block."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoModelForCausalLM

from learngene_core.learngene import AuxNet, Learngene, expand
from learngene_core.testing import LM_LAYERS, tiny_lm_config
from sws import SWS

STAGES = [1, 2, 1]
METHOD = SWS()


def sws_learngene(kind: str) -> tuple[Learngene, AuxNet]:
    torch.manual_seed(0)
    config = tiny_lm_config(kind, sum(STAGES))
    template = AutoModelForCausalLM.from_config(config)
    spec = METHOD.parse_spec({"stages": STAGES})
    aux = AuxNet(template, METHOD, spec)
    backbone, state = aux.backbone, template.state_dict()
    tensors = {k: v.detach().clone() for k, v in aux.learngene_tensors().items()}
    tensors.update({f"inherited.{n}": state[n].clone() for n in backbone.inherited_names(template)})
    manifest = {"method": "sws", "backbone": backbone.name, "arch": backbone.arch(template), "spec": spec}
    return Learngene(tensors, manifest), aux


@pytest.mark.parametrize("kind", ["llama", "gpt2"])
@pytest.mark.parametrize("depth", [2, 8])
def test_sws_lm_stage_blocks_are_bitwise_equal_across_a_stage(kind, depth):
    lg, _ = sws_learngene(kind)
    layout = METHOD.default_layout(depth, lg.spec)
    model, inheritance = expand(lg, METHOD, layout)
    state, prefix = model.state_dict(), LM_LAYERS[kind]
    names = [k.removeprefix("stage0.") for k in lg.tensors if k.startswith("stage0.")]
    assert names
    for i, stage in enumerate(layout):
        for n in names:
            assert torch.equal(state[f"{prefix}.{i}.{n}"], lg.tensors[f"stage{stage}.{n}"]), (i, n)
            assert inheritance[f"{prefix}.{i}.{n}"] == "expanded"
    first = {s: layout.index(s) for s in set(layout)}
    for i, stage in enumerate(layout):
        for n in names:
            assert torch.equal(state[f"{prefix}.{i}.{n}"], state[f"{prefix}.{first[stage]}.{n}"])
    assert set(inheritance.values()) == {"expanded", "copied"}
    plain = AutoModelForCausalLM.from_config(tiny_lm_config(kind, depth))
    plain.load_state_dict(state, strict=True)


@pytest.mark.parametrize("kind", ["llama", "gpt2"])
def test_sws_aux_lm_shares_each_stage_block(kind):
    _, aux = sws_learngene(kind)
    generated, prefix = aux.generated_state(), LM_LAYERS[kind]
    names = [k.removeprefix(f"{prefix}.0.") for k in generated if k.startswith(f"{prefix}.0.")]
    assert len(generated) == sum(STAGES) * len(names)
    for n in names:  # stage 1 holds aux layers 1 and 2; stage 0 is layer 0, stage 2 is layer 3
        assert torch.equal(generated[f"{prefix}.1.{n}"], generated[f"{prefix}.2.{n}"])
    matrices = [n for n in names if generated[f"{prefix}.0.{n}"].ndim == 2]
    assert all(not torch.equal(generated[f"{prefix}.0.{n}"], generated[f"{prefix}.1.{n}"]) for n in matrices)
