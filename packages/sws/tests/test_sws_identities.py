"""What SWS guarantees by construction: stage sharing, exact reproduction of the aux net, the layout rule."""

from __future__ import annotations

import itertools
import json

import pytest
import timm
import torch
from safetensors.torch import load_file

from learngene_core.learngene import (
    BLOCK_TENSORS,
    INHERITED_TENSORS,
    VIT_NAME,
    AuxNet,
    Learngene,
    expand,
)
from learngene_core.learngene.extract import AUX_RUN
from sws import SWS

METHOD = SWS()
PAPER = {"stages": [3, 3, 4, 3, 3]}


@pytest.fixture(scope="module")
def learngene(learngene_dir) -> Learngene:
    return Learngene.load(learngene_dir, "sws")


def block(model, i: int, name: str) -> torch.Tensor:
    return model.state_dict()[f"blocks.{i}.{name}"]


def test_layers_of_one_stage_are_bitwise_copies_of_that_stages_learngene_block(learngene):
    layout = [0, 0, 1, 1, 1, 2, 2]
    model, _ = expand(learngene, METHOD, layout, num_classes=5)
    for name in BLOCK_TENSORS:
        for i, stage in enumerate(layout):
            assert torch.equal(block(model, i, name), learngene.tensors[f"stage{stage}.{name}"]), (i, name)
        for i, j in itertools.combinations(range(len(layout)), 2):
            if layout[i] == layout[j]:
                assert torch.equal(block(model, i, name), block(model, j, name)), (i, j, name)


def test_layers_of_different_stages_differ(learngene):
    layout = [0, 1, 2]
    model, _ = expand(learngene, METHOD, layout, num_classes=5)
    for name in BLOCK_TENSORS:
        for i, j in itertools.combinations(range(3), 2):
            assert not torch.equal(block(model, i, name), block(model, j, name)), (i, j, name)


def test_descendant_with_the_aux_layout_and_head_computes_the_trained_aux_net(learngene, learngene_dir):
    """Expansion loses nothing: the learngene + aux layout + aux head is the distilled aux net itself."""
    aux_layout, num_classes = learngene.manifest["aux_layout"], learngene.manifest["num_classes"]
    assert aux_layout == METHOD.aux_layout(learngene.spec)
    template = timm.create_model(
        VIT_NAME, pretrained=False, **{**learngene.arch, "depth": len(aux_layout), "num_classes": num_classes}
    )
    aux = AuxNet(template, METHOD, learngene.spec)
    state = load_file(str(learngene_dir / AUX_RUN / "final" / "model.safetensors"))
    aux.load_state_dict(state, strict=True)  # the aux net as extraction left it
    descendant, inheritance = expand(learngene, METHOD, aux_layout, num_classes, load_head=True)
    assert set(inheritance.values()) == {"expanded", "copied"}  # nothing fresh
    x = torch.randn(8, 1, 16, 16, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        want, got = aux.eval()(x), descendant.eval()(x)
    assert torch.allclose(got, want, atol=1e-5, rtol=1e-5), (got - want).abs().max()
    assert want.std() > 0.1  # a trained net, not a constant output


def test_learngene_stores_one_block_per_stage_plus_inherited_and_head(learngene):
    stages = len(learngene.spec["stages"])
    assert stages == 3
    groups = {key.split(".")[0] for key in learngene.tensors}
    assert groups == {f"stage{s}" for s in range(stages)} | {"inherited", "head"}
    assert set(learngene.tensors) == (
        {f"stage{s}.{n}" for s in range(stages) for n in BLOCK_TENSORS}
        | {f"inherited.{n}" for n in INHERITED_TENSORS}
        | {"head.weight", "head.bias"}
    )


@pytest.mark.parametrize("spec", [{"stages": [1, 2, 1]}, {"stages": [2, 2, 2]}, PAPER, {"stages": [5, 1]}])
def test_default_layout_splits_the_depth_evenly_over_stages_earliest_stages_first(spec):
    aux = METHOD.aux_layout(spec)
    stages = len(spec["stages"])
    assert aux == sorted(aux) and len(aux) == sum(spec["stages"])
    assert [aux.count(s) for s in range(stages)] == spec["stages"]
    assert METHOD.default_layout(len(aux), spec) == aux  # the aux depth reproduces the aux net
    for depth in range(1, 21):
        layout = METHOD.default_layout(depth, spec)
        assert len(layout) == depth
        assert layout == sorted(layout), layout  # non-decreasing
        METHOD.check_layout(layout, spec)  # the default is always expandable
        if depth == len(aux):
            continue
        if depth < stages:  # one layer each from evenly spaced stages
            assert layout == [i * stages // depth for i in range(depth)]
        else:  # every stage used; sizes differ by at most one, the larger ones first
            sizes = [layout.count(s) for s in range(stages)]
            assert sizes == sorted(sizes, reverse=True) and max(sizes) - min(sizes) <= 1, (depth, sizes)


def test_paper_stages_at_depth_12_give_the_reference_layers_source():
    assert METHOD.default_layout(12, PAPER) == [0, 0, 0, 1, 1, 1, 2, 2, 3, 3, 4, 4]
    assert METHOD.default_layout(16, PAPER) == [0, 0, 0, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 4, 4, 4]
    assert METHOD.default_layout(6, PAPER) == [0, 0, 1, 2, 3, 4]


def test_fresh_stages_are_independent_timm_style_blocks():
    template = timm.create_model(
        VIT_NAME, pretrained=False, embed_dim=64, num_heads=4, depth=1, mlp_ratio=2.0
    )
    spec = {"stages": [2, 2, 2]}
    torch.manual_seed(0)
    tensors = METHOD.init_tensors(template.blocks[0], spec)
    assert set(tensors) == {f"stage{s}.{n}" for s in range(3) for n in BLOCK_TENSORS}
    for name in BLOCK_TENSORS:
        values = [tensors[f"stage{s}.{name}"] for s in range(3)]
        assert all(v.shape == block(template, 0, name).shape for v in values)
        if values[0].ndim == 2:  # Linear weights: trunc_normal(0.02), drawn separately for every stage
            for v in values:
                assert abs(v.std().item() - 0.02) < 0.002 and abs(v.mean().item()) < 0.002
            for a, b in itertools.combinations(values, 2):
                assert not torch.equal(a, b)
                corr = torch.corrcoef(torch.stack([a.flatten(), b.flatten()]))[0, 1]
                assert abs(corr) < 0.1
        elif name.startswith(("norm1", "norm2")) and name.endswith("weight"):
            assert all(torch.equal(v, torch.ones_like(v)) for v in values)
        else:  # biases
            assert all(torch.equal(v, torch.zeros_like(v)) for v in values)


def test_aux_net_layers_of_one_stage_share_one_trainable_tensor():
    """Weight sharing during extraction is real: one tensor per stage gets every layer's gradient."""
    spec = {"stages": [1, 2, 1]}
    template = timm.create_model(
        VIT_NAME, pretrained=False, img_size=16, patch_size=4, embed_dim=32, num_heads=2, depth=4,
        in_chans=1, num_classes=3, class_token=False, global_pool="avg",
    )  # fmt: skip
    aux = AuxNet(template, METHOD, spec)
    state = aux.generated_state()
    for name in BLOCK_TENSORS:
        assert state[f"blocks.1.{name}"] is state[f"blocks.2.{name}"]
        assert state[f"blocks.0.{name}"] is not state[f"blocks.1.{name}"]
    trainable = {n for n, p in aux.named_parameters() if p.requires_grad}
    assert not any(n.startswith("template.blocks.") for n in trainable)
    assert len([n for n in trainable if n.startswith("learngene.")]) == 3 * len(BLOCK_TENSORS)
    aux(torch.randn(2, 1, 16, 16)).sum().backward()
    assert all(p.grad is not None for n, p in aux.named_parameters() if n.startswith("learngene."))


def test_stage_ten_and_above_are_not_confused_with_stage_one():
    template = timm.create_model(VIT_NAME, pretrained=False, embed_dim=32, num_heads=2, depth=1)
    spec = {"stages": [1] * 12}
    tensors = METHOD.init_tensors(template.blocks[0], spec)
    layout = list(range(12))
    for layer in layout:
        got = METHOD.layer_tensors(tensors, layer, layout, spec)
        assert set(got) == set(BLOCK_TENSORS)
        assert all(got[n] is tensors[f"stage{layer}.{n}"] for n in BLOCK_TENSORS)


def test_learngene_size_does_not_depend_on_descendant_depth(learngene, learngene_dir):
    per_block = sum(learngene.tensors[f"stage0.{n}"].numel() for n in BLOCK_TENSORS)
    inherited = sum(t.numel() for k, t in learngene.tensors.items() if k.startswith("inherited."))
    stages = len(learngene.spec["stages"])
    size = learngene.num_parameters()
    assert size == stages * per_block + inherited
    assert json.loads((learngene_dir / "manifest.json").read_text())["parameters"]["learngene"] == size
    for depth in (1, 4, 12):
        layout = METHOD.default_layout(depth, learngene.spec)
        model, _ = expand(learngene, METHOD, layout, num_classes=5)
        distinct = {
            tuple(torch.equal(block(model, i, "attn.qkv.weight"), block(model, j, "attn.qkv.weight"))
                  for j in range(depth))
            for i in range(depth)
        }  # fmt: skip
        assert len(distinct) == len(set(layout)) <= stages  # deeper nets hold more copies, no new blocks
        assert learngene.num_parameters() == size


def test_expanded_descendant_is_a_plain_timm_vit_loadable_strictly_from_its_config(
    sws_cli, learngene, learngene_dir, tmp_path
):
    out = tmp_path / "d4"
    result = sws_cli(
        "expand", "--learngene", learngene_dir, "--depth", 4, "--num-classes", 5, "--output-dir", out
    )
    assert result.code == 0, result.err
    config = json.loads((out / "config.json").read_text())
    assert config["timm_model"] == "vit_tiny_patch16_224"
    assert config["method"] == "sws" and config["layout"] == METHOD.default_layout(4, learngene.spec)
    model = timm.create_model("vit_tiny_patch16_224", pretrained=False, **config["kwargs"])
    model.load_state_dict(load_file(str(out / "model.safetensors")), strict=True)
    assert len(model.blocks) == 4 and model.cls_token is None and model.global_pool == "avg"
    assert model.head.out_features == 5
    for i, stage in enumerate(config["layout"]):
        for name in BLOCK_TENSORS:
            assert torch.equal(block(model, i, name), learngene.tensors[f"stage{stage}.{name}"])
    inheritance = json.loads((out / "inheritance.json").read_text())
    assert {k for k, v in inheritance.items() if v == "fresh"} == {"head.weight", "head.bias"}
    assert set(inheritance) == set(model.state_dict())
