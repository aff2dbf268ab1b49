"""The shared learngene machinery (aux net, expansion, learngene files, architecture checks), method-agnostic.

Exercised through a toy method defined here ("shift": layer i = base + layout[i] * delta), so nothing from a
method package (tleg, sws) is imported.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
import timm
import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from timm.layers import resample_abs_pos_embed
from timm.models.vision_transformer import VisionTransformer
from torch import nn

from learngene_core.errors import CheckpointError, ConfigError, ModelError
from learngene_core.learngene import (
    BLOCK_TENSORS,
    INHERITED_TENSORS,
    VIT_NAME,
    AuxNet,
    Learngene,
    LearngeneMethod,
    check_learngene_vit,
    expand,
    load_descendant,
    save_descendant,
    vit_arch,
)
from learngene_core.learngene.expand import descendant_kwargs

pytestmark = pytest.mark.usefixtures("single_thread")

INHERITANCE_KINDS = {"expanded", "copied", "resized", "fresh"}
HEAD = ("head.weight", "head.bias")
WIDTH, CLASSES, AUX_DEPTH = 32, 3, 3
TEMPLATE_KWARGS: dict[str, Any] = dict(
    img_size=16,
    patch_size=4,
    embed_dim=WIDTH,
    num_heads=2,
    mlp_ratio=2.0,
    in_chans=1,
    num_classes=CLASSES,
    class_token=False,
    global_pool="avg",
)


class ShiftMethod(LearngeneMethod):
    """A toy learngene: `base.*` and `delta.*` per block tensor; layer i = base + layout[i] * delta."""

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

    def layer_tensors(
        self, tensors: dict[str, torch.Tensor], layer: int, layout: list[int], spec: dict[str, Any]
    ) -> dict[str, torch.Tensor]:
        k = layout[layer]
        return {n: tensors[f"base.{n}"] + k * tensors[f"delta.{n}"] for n in BLOCK_TENSORS}


METHOD = ShiftMethod()
SPEC = METHOD.parse_spec({"depth": AUX_DEPTH})


def make_template(depth: int = AUX_DEPTH, seed: int = 0, **overrides: Any) -> VisionTransformer:
    """A tiny timm ViT in the learngene setting whose inherited tensors are all non-trivial."""
    torch.manual_seed(seed)
    model = timm.create_model(VIT_NAME, pretrained=False, **{**TEMPLATE_KWARGS, "depth": depth, **overrides})
    with torch.no_grad():  # fc_norm starts as (1, 0) and the head bias as 0: make copies distinguishable
        for name, param in model.named_parameters():
            if not name.startswith("blocks."):
                param.add_(0.1 * torch.randn_like(param))
    return model


def make_learngene(seed: int = 0) -> Learngene:
    """A learngene as extraction would save it, from an (untrained) aux net of the toy method."""
    template = make_template(seed=seed)
    aux = AuxNet(template, METHOD, SPEC)
    state = template.state_dict()
    tensors = {k: v.detach().clone() for k, v in aux.learngene_tensors().items()}
    tensors.update({f"inherited.{n}": state[n].clone() for n in INHERITED_TENSORS})
    tensors.update({n: state[n].clone() for n in HEAD})
    manifest = {
        "method": METHOD.name,
        "formula_version": METHOD.formula_version,
        "formula": METHOD.formula,
        "arch": vit_arch(template),
        "spec": SPEC,
        "aux_layout": aux.layout,
        "num_classes": CLASSES,
    }
    return Learngene(tensors, manifest)


def expected_block(lg: Learngene, layer: int, layout: list[int]) -> dict[str, torch.Tensor]:
    k = layout[layer]
    return {n: lg.tensors[f"base.{n}"] + k * lg.tensors[f"delta.{n}"] for n in BLOCK_TENSORS}


def images(n: int = 4, size: int = 16, seed: int = 1) -> torch.Tensor:
    return torch.randn(n, 1, size, size, generator=torch.Generator().manual_seed(seed))


# ----------------------------------------------------------------------------------------------- aux net


def test_aux_net_forward_equals_plain_vit_loaded_with_generated_blocks():
    template = make_template()
    aux = AuxNet(template, METHOD, SPEC).eval()
    plain = timm.create_model(VIT_NAME, pretrained=False, **{**TEMPLATE_KWARGS, "depth": AUX_DEPTH})
    state = {k: v for k, v in template.state_dict().items() if not k.startswith("blocks.")}
    state.update(aux.generated_state())
    plain.load_state_dict(state, strict=True)
    plain.eval()
    x = images()
    with torch.no_grad():
        out, expected, placeholders = aux(x), plain(x), template(x)
    assert out.shape == (4, CLASSES)
    assert torch.allclose(out, expected, atol=1e-6, rtol=1e-5)
    assert not torch.allclose(out, placeholders, atol=1e-3)  # the template's own blocks are not used


def test_aux_net_generated_state_follows_the_method_for_every_layer():
    aux = AuxNet(make_template(), METHOD, SPEC)
    tensors = {k: v.detach() for k, v in aux.learngene_tensors().items()}
    state = aux.generated_state()
    assert set(state) == {f"blocks.{i}.{n}" for i in range(AUX_DEPTH) for n in BLOCK_TENSORS}
    for i in range(AUX_DEPTH):
        for n in BLOCK_TENSORS:
            assert torch.equal(state[f"blocks.{i}.{n}"], tensors[f"base.{n}"] + i * tensors[f"delta.{n}"])


def test_aux_net_gradients_reach_only_learngene_and_template_non_block_tensors():
    template = make_template()
    aux = AuxNet(template, METHOD, SPEC).train()
    labels = torch.tensor([0, 1, 2, 1])
    F.cross_entropy(aux(images()), labels).backward()

    learngene = dict(aux.learngene.named_parameters())
    assert len(learngene) == 2 * len(BLOCK_TENSORS)
    for name, param in learngene.items():
        assert param.grad is not None and param.grad.abs().sum() > 0, name
    for name, param in template.named_parameters():
        if name.startswith("blocks."):
            assert param.grad is None and not param.requires_grad, name
        else:
            assert param.grad is not None and param.grad.abs().sum() > 0, name
    trainable = {n for n, p in aux.named_parameters() if p.requires_grad}
    expected = {f"learngene.{k}" for k in learngene} | {
        f"template.{n}" for n, _ in template.named_parameters() if not n.startswith("blocks.")
    }
    assert trainable == expected


def test_aux_net_refuses_a_template_with_a_class_token():
    template = timm.create_model(
        VIT_NAME,
        pretrained=False,
        **{**TEMPLATE_KWARGS, "depth": AUX_DEPTH, "class_token": True, "global_pool": "token"},
    )
    with pytest.raises(ModelError, match="class_token"):
        AuxNet(template, METHOD, SPEC)


# ---------------------------------------------------------------------------------------------- expansion


def test_expand_gives_timm_vit_of_requested_depth_that_loads_strictly():
    lg = make_learngene()
    layout = list(range(5))
    model, _ = expand(lg, METHOD, layout, num_classes=7)
    assert type(model) is VisionTransformer
    assert len(model.blocks) == 5 and model.num_classes == 7
    assert model.cls_token is None and model.global_pool == "avg"
    twin = timm.create_model(VIT_NAME, pretrained=False, **descendant_kwargs(lg, 5, 7))
    twin.load_state_dict(model.state_dict(), strict=True)


def test_expand_inheritance_map_covers_every_tensor_with_known_kinds():
    lg = make_learngene()
    layout = list(range(4))
    model, inheritance = expand(lg, METHOD, layout, num_classes=7)
    state = model.state_dict()
    assert set(inheritance) == set(state)
    assert set(inheritance.values()) <= INHERITANCE_KINDS
    for i in range(len(layout)):
        block = expected_block(lg, i, layout)
        for n in BLOCK_TENSORS:
            key = f"blocks.{i}.{n}"
            assert inheritance[key] == "expanded", key
            assert torch.equal(state[key], block[n]), key
    for n in INHERITED_TENSORS:
        assert inheritance[n] == "copied", n
        assert torch.equal(state[n], lg.tensors[f"inherited.{n}"]), n
    assert {k for k, v in inheritance.items() if v == "fresh"} == set(HEAD)


def test_expand_head_is_fresh_by_default_and_copied_with_load_head():
    lg = make_learngene()
    layout = list(range(AUX_DEPTH))
    model, inheritance = expand(lg, METHOD, layout, num_classes=CLASSES)
    assert all(inheritance[n] == "fresh" for n in HEAD)
    assert not torch.equal(model.head.weight, lg.tensors["head.weight"])

    model, inheritance = expand(lg, METHOD, layout, num_classes=CLASSES, load_head=True)
    assert all(inheritance[n] == "copied" for n in HEAD)
    assert torch.equal(model.head.weight, lg.tensors["head.weight"])
    assert torch.equal(model.head.bias, lg.tensors["head.bias"])


def test_expand_load_head_with_other_class_count_is_a_config_error():
    with pytest.raises(ConfigError, match="head"):
        expand(make_learngene(), METHOD, [0, 1], num_classes=CLASSES + 1, load_head=True)


def test_expand_at_aux_layout_with_head_reproduces_the_aux_net():
    template = make_template()
    aux = AuxNet(template, METHOD, SPEC).eval()
    lg = make_learngene()  # same seed: the same template and learngene tensors
    model, _ = expand(lg, METHOD, aux.layout, num_classes=CLASSES, load_head=True)
    x = images()
    with torch.no_grad():
        assert torch.allclose(model.eval()(x), aux(x), atol=1e-6, rtol=1e-5)


def test_expand_to_other_image_size_resizes_pos_embed_to_the_new_grid():
    lg = make_learngene()
    model, inheritance = expand(lg, METHOD, [0, 1], num_classes=CLASSES, img_size=24)
    assert inheritance["pos_embed"] == "resized"
    assert tuple(model.patch_embed.grid_size) == (6, 6)
    assert model.pos_embed.shape == (1, 36, WIDTH)
    expected = resample_abs_pos_embed(lg.tensors["inherited.pos_embed"], [6, 6], [4, 4], num_prefix_tokens=0)
    assert torch.allclose(model.pos_embed, expected)
    assert inheritance["patch_embed.proj.weight"] == "copied"
    with torch.no_grad():
        assert model.eval()(images(size=24)).shape == (4, CLASSES)


def test_expand_to_other_patch_size_resizes_patch_embed_and_pos_embed():
    lg = make_learngene()
    model, inheritance = expand(lg, METHOD, [0, 1], num_classes=CLASSES, patch_size=2)
    assert inheritance["patch_embed.proj.weight"] == "resized"
    assert model.patch_embed.proj.weight.shape == (WIDTH, 1, 2, 2)
    assert inheritance["pos_embed"] == "resized" and model.pos_embed.shape == (1, 64, WIDTH)


def test_saved_descendant_round_trips_bitwise_and_loads_with_timm_alone(tmp_path):
    lg = make_learngene()
    layout = list(range(4))
    model, inheritance = expand(lg, METHOD, layout, num_classes=5)
    kwargs = descendant_kwargs(lg, len(layout), 5)
    out = save_descendant(
        model, kwargs, inheritance, tmp_path / "desc", {"method": "shift", "layout": layout}
    )
    assert {p.name for p in out.iterdir()} == {"model.safetensors", "config.json", "inheritance.json"}
    assert json.loads((out / "inheritance.json").read_text()) == inheritance

    loaded = load_descendant(out)
    ours, theirs = model.state_dict(), loaded.state_dict()
    assert ours.keys() == theirs.keys()
    for k in ours:
        assert ours[k].dtype == theirs[k].dtype and torch.equal(ours[k], theirs[k]), k

    # a user without any learngene code: timm + safetensors only
    config = json.loads((out / "config.json").read_text())
    assert config["timm_model"] == "vit_tiny_patch16_224"
    plain = timm.create_model("vit_tiny_patch16_224", **config["kwargs"])
    plain.load_state_dict(load_file(str(out / "model.safetensors")), strict=True)
    assert len(plain.blocks) == 4 and plain.num_classes == 5
    x = images()
    with torch.no_grad():
        assert torch.equal(plain.eval()(x), model.eval()(x))


# --------------------------------------------------------------------------------------- learngene files


def test_learngene_save_load_round_trip_is_exact(tmp_path):
    lg = make_learngene()
    lg.save(tmp_path / "lg")
    back = Learngene.load(tmp_path / "lg", method="shift")
    assert back.tensors.keys() == lg.tensors.keys()
    for k, v in lg.tensors.items():
        assert back.tensors[k].dtype == v.dtype and torch.equal(back.tensors[k], v), k
    assert back.manifest == lg.manifest
    assert back.method == "shift" and back.arch == lg.arch and back.spec == SPEC
    assert back.num_parameters() == lg.num_parameters()
    assert back.num_parameters(include_head=True) == lg.num_parameters() + sum(
        lg.tensors[n].numel() for n in HEAD
    )


def test_learngene_load_of_dir_without_manifest_is_a_checkpoint_error_naming_it(tmp_path):
    directory = tmp_path / "not-a-learngene"
    directory.mkdir()
    (directory / "learngene.safetensors").write_bytes(b"")
    with pytest.raises(CheckpointError) as info:
        Learngene.load(directory)
    assert str(directory) in str(info.value) and "manifest.json" in str(info.value)


def test_learngene_load_of_missing_dir_is_a_checkpoint_error_naming_it(tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(CheckpointError) as info:
        Learngene.load(missing)
    assert str(missing) in str(info.value)


def test_learngene_load_of_other_method_is_a_checkpoint_error_naming_both(tmp_path):
    make_learngene().save(tmp_path / "lg")
    with pytest.raises(CheckpointError) as info:
        Learngene.load(tmp_path / "lg", method="other")
    message = str(info.value)
    assert "other" in message and "shift" in message and str(tmp_path / "lg") in message


def test_descendant_model_kwargs_keeps_regularisation_and_refuses_shape_keys():
    lg = make_learngene()
    kwargs = {"embed_dim": WIDTH, "drop_path_rate": 0.1, "drop_rate": 0.0}  # same width: accepted, no-op
    assert lg.descendant_model_kwargs(kwargs, "model.kwargs") == {"drop_path_rate": 0.1, "drop_rate": 0.0}
    for key in ("depth", "img_size", "patch_size", "class_token"):
        with pytest.raises(ConfigError, match=f"model.kwargs.{key}: .*drop_path_rate"):
            lg.descendant_model_kwargs({key: 9, "drop_path_rate": 0.1}, "model.kwargs")


def test_expand_applies_regularisation_kwargs_without_changing_any_tensor():
    lg = make_learngene()
    plain, _ = expand(lg, METHOD, [0, 1], num_classes=CLASSES, load_head=True)
    regular, _ = expand(
        lg, METHOD, [0, 1], num_classes=CLASSES, load_head=True, regularisation={"drop_path_rate": 0.2}
    )
    assert regular.blocks[1].drop_path1.drop_prob == pytest.approx(0.2)
    assert all(torch.equal(a, b) for a, b in zip(plain.state_dict().values(), regular.state_dict().values()))


def test_check_model_kwargs_refuses_other_width_naming_both_widths():
    lg = make_learngene()
    lg.check_model_kwargs({"embed_dim": WIDTH}, "model.kwargs")  # same width: fine
    with pytest.raises(ConfigError) as info:
        lg.check_model_kwargs({"embed_dim": 48}, "model.kwargs")
    message = str(info.value)
    assert "embed_dim" in message and "48" in message and str(WIDTH) in message


# ---------------------------------------------------------------------------------- architecture checks


def test_check_learngene_vit_accepts_avg_pooled_vit_without_class_token():
    model = make_template()
    assert check_learngene_vit(model, "the model") is model
    assert vit_arch(model) == {
        "embed_dim": WIDTH,
        "num_heads": 2,
        "mlp_ratio": 2.0,
        "patch_size": 4,
        "img_size": 16,
        "in_chans": 1,
        "qkv_bias": True,
        "class_token": False,
        "global_pool": "avg",
    }


@pytest.mark.parametrize(
    "overrides",
    [{"class_token": True, "global_pool": "token"}, {"class_token": True, "global_pool": "avg"}],
    ids=["token-pooling", "class-token-with-avg"],
)
def test_check_learngene_vit_rejects_class_token_or_token_pooling(overrides):
    model = timm.create_model(VIT_NAME, pretrained=False, **{**TEMPLATE_KWARGS, "depth": 1, **overrides})
    with pytest.raises(ModelError) as info:
        check_learngene_vit(model, "the ancestry")
    assert "class_token" in str(info.value) and "global_pool" in str(info.value)


def test_check_learngene_vit_rejects_non_vit_naming_the_type():
    with pytest.raises(ModelError, match="VisionTransformer"):
        check_learngene_vit(nn.Linear(2, 2), "the model")
