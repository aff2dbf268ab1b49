"""TLEG's exact identities: block i of an L-layer descendant = theta_A + (i / L) * theta_B, what is expanded,
copied and fresh, the aux net = the descendant at the aux depth, the paper's fresh init, and the learngene's
size, which does not depend on the depth of its descendants.
"""

from __future__ import annotations

import pytest
import timm
import torch

from learngene_core.checkpoint import load_model_weights
from learngene_core.errors import ConfigError
from learngene_core.learngene import (
    BLOCK_TENSORS,
    INHERITED_TENSORS,
    VIT_NAME,
    AuxNet,
    Learngene,
    expand,
    vit_arch,
)
from tleg import TLEG

AUX_DEPTH, WIDTH, NUM_CLASSES = 4, 64, 5  # as in conftest
DEPTHS = (1, 3, 5, 12)
HEAD = ("head.weight", "head.bias")
TINY_VIT = dict(img_size=16, patch_size=4, embed_dim=WIDTH, num_heads=4, mlp_ratio=2.0, in_chans=1)
LINEAR_WEIGHTS = ("attn.qkv.weight", "attn.proj.weight", "mlp.fc1.weight", "mlp.fc2.weight")
LINEAR_BIASES = ("attn.qkv.bias", "attn.proj.bias", "mlp.fc1.bias", "mlp.fc2.bias")
NORMS = ("norm1.weight", "norm1.bias", "norm2.weight", "norm2.bias")


def make_template(depth: int, seed: int = 0, num_classes: int = NUM_CLASSES):
    torch.manual_seed(seed)
    return timm.create_model(
        VIT_NAME,
        pretrained=False,
        depth=depth,
        num_classes=num_classes,
        class_token=False,
        global_pool="avg",
        **TINY_VIT,
    )


def random_learngene(seed: int = 0) -> Learngene:
    """A TLEG learngene with every tensor (A, B, inherited, head) filled at random."""
    template = make_template(AUX_DEPTH, seed)
    gen = torch.Generator().manual_seed(seed)
    tensors = {}
    for name, param in template.blocks[0].named_parameters():
        for group in ("A", "B"):
            tensors[f"{group}.{name}"] = torch.randn(param.shape, generator=gen)
    state = template.state_dict()
    for name in INHERITED_TENSORS:
        tensors[f"inherited.{name}"] = torch.randn(state[name].shape, generator=gen)
    for name in HEAD:
        tensors[name] = torch.randn(state[name].shape, generator=gen)
    spec = TLEG().parse_spec({"aux_depth": AUX_DEPTH})
    manifest = {"method": "tleg", "arch": vit_arch(template), "spec": spec, "num_classes": NUM_CLASSES}
    return Learngene(tensors, manifest)


@pytest.fixture(params=["extracted", "random"])
def any_learngene(request) -> Learngene:
    """The extracted learngene and a random one: the identities hold for any tensors."""
    lg = request.getfixturevalue("learngene") if request.param == "extracted" else random_learngene()
    for name in BLOCK_TENSORS:  # precondition: B matters, so a wrong coefficient cannot go unnoticed
        assert lg.tensors[f"B.{name}"].count_nonzero() > 0, name
    return lg


def test_extracted_learngene_has_nonzero_B_for_every_block_tensor(learngene):
    for name in BLOCK_TENSORS:
        assert learngene.tensors[f"B.{name}"].count_nonzero() > 0, name


# ------------------------------------------------------------------------------------------ the formula


@pytest.mark.parametrize("depth", DEPTHS)
def test_block_i_of_L_layers_is_exactly_A_plus_i_over_L_times_B(any_learngene, depth):
    model, _ = expand(any_learngene, TLEG(), list(range(depth)), NUM_CLASSES)
    state = model.state_dict()
    for i in range(depth):
        for name in BLOCK_TENSORS:
            a, b = any_learngene.tensors[f"A.{name}"], any_learngene.tensors[f"B.{name}"]
            expected = a + (i / depth) * b
            got = state[f"blocks.{i}.{name}"]
            assert got.dtype == torch.float32 and torch.equal(got, expected), f"blocks.{i}.{name}"


@pytest.mark.parametrize("depth", DEPTHS)
def test_block_0_is_exactly_A(any_learngene, depth):
    model, _ = expand(any_learngene, TLEG(), list(range(depth)), NUM_CLASSES)
    state = model.state_dict()
    for name in BLOCK_TENSORS:
        assert torch.equal(state[f"blocks.0.{name}"], any_learngene.tensors[f"A.{name}"]), name


@pytest.mark.parametrize("depth", [d for d in DEPTHS if d > 1])
def test_consecutive_blocks_differ_by_B_over_L(any_learngene, depth):
    model, _ = expand(any_learngene, TLEG(), list(range(depth)), NUM_CLASSES)
    state = model.state_dict()
    for name in BLOCK_TENSORS:
        step = any_learngene.tensors[f"B.{name}"] / depth
        for i in range(depth - 1):
            diff = state[f"blocks.{i + 1}.{name}"] - state[f"blocks.{i}.{name}"]
            assert torch.allclose(diff, step, rtol=1e-4, atol=1e-6), f"{name}, blocks {i}->{i + 1}"


@pytest.mark.parametrize("depth", [d for d in DEPTHS if d > 1])
def test_last_block_stops_short_of_A_plus_B(any_learngene, depth):
    """The coefficient is i / L (last block (L-1)/L), not (l-1)/(L-1) (which would end at A + B)."""
    model, _ = expand(any_learngene, TLEG(), list(range(depth)), NUM_CLASSES)
    last = model.state_dict()[f"blocks.{depth - 1}.mlp.fc1.weight"]
    a, b = any_learngene.tensors["A.mlp.fc1.weight"], any_learngene.tensors["B.mlp.fc1.weight"]
    assert torch.allclose(last, a + (depth - 1) / depth * b, rtol=1e-5, atol=1e-6)
    assert not torch.allclose(last, a + b, rtol=1e-3, atol=1e-4)


@pytest.mark.parametrize("depth", DEPTHS)
def test_only_block_tensors_are_expanded_embeddings_and_fc_norm_copied_head_fresh(any_learngene, depth):
    model, inheritance = expand(any_learngene, TLEG(), list(range(depth)), NUM_CLASSES)
    state = model.state_dict()
    expanded = {f"blocks.{i}.{n}" for i in range(depth) for n in BLOCK_TENSORS}
    assert {k for k, v in inheritance.items() if v == "expanded"} == expanded
    assert {k for k, v in inheritance.items() if v == "copied"} == set(INHERITED_TENSORS)
    assert {k for k, v in inheritance.items() if v == "fresh"} == set(HEAD)
    assert set(inheritance) == set(state)
    for name in INHERITED_TENSORS:
        assert torch.equal(state[name], any_learngene.tensors[f"inherited.{name}"]), name
    assert "fc_norm.weight" in state and "norm.weight" not in state  # the final norm is timm's fc_norm


def test_descendants_are_plain_timm_vits_with_avg_pooling_and_no_class_token(learngene):
    for depth in DEPTHS:
        model, _ = expand(learngene, TLEG(), list(range(depth)), NUM_CLASSES)
        assert type(model) is timm.models.vision_transformer.VisionTransformer
        assert len(model.blocks) == depth
        assert model.cls_token is None and model.global_pool == "avg"
        assert model.embed_dim == WIDTH and model.num_classes == NUM_CLASSES


# ------------------------------------------------------------------------------ aux net == descendant


def test_aux_net_forward_equals_descendant_at_aux_depth_with_head(learngene_dir, learngene):
    """The trained aux net of the extraction run (aux-run/final) is the depth-4 descendant with load_head."""
    spec = learngene.spec
    assert spec == {"aux_depth": AUX_DEPTH}
    template = make_template(AUX_DEPTH, num_classes=NUM_CLASSES)
    aux = AuxNet(template, TLEG(), spec)
    load_model_weights(aux, learngene_dir / "aux-run" / "final", strict=True)
    # the saved learngene is exactly the aux net's learngene and inherited tensors
    for name, value in aux.learngene_tensors().items():
        assert torch.equal(value.detach(), learngene.tensors[name]), name
    for name in INHERITED_TENSORS:
        assert torch.equal(template.state_dict()[name], learngene.tensors[f"inherited.{name}"]), name

    model, inheritance = expand(learngene, TLEG(), list(range(AUX_DEPTH)), NUM_CLASSES, load_head=True)
    assert all(inheritance[n] == "copied" for n in HEAD)
    x = torch.randn(8, 1, 16, 16, generator=torch.Generator().manual_seed(0))
    aux.eval()
    model.eval()
    with torch.no_grad():
        assert torch.allclose(aux(x), model(x), rtol=1e-4, atol=1e-5)


# ------------------------------------------------------------------------------------- the paper's init


def fresh_tensors(seed: int = 0) -> dict[str, torch.Tensor]:
    torch.manual_seed(seed)
    return TLEG().init_tensors(make_template(1).blocks[0], {"aux_depth": AUX_DEPTH})


def test_fresh_init_has_A_and_B_for_every_block_tensor_with_block_shapes():
    tensors = fresh_tensors()
    block = dict(make_template(1).blocks[0].named_parameters())
    assert set(tensors) == {f"{g}.{n}" for g in ("A", "B") for n in BLOCK_TENSORS}
    for name, param in block.items():
        assert tensors[f"A.{name}"].shape == param.shape == tensors[f"B.{name}"].shape, name


def test_fresh_init_linear_weights_are_trunc_normal_std_002_and_A_differs_from_B():
    tensors = fresh_tensors()
    for name in LINEAR_WEIGHTS:
        for group in ("A", "B"):
            w = tensors[f"{group}.{name}"]
            assert abs(w.std().item() - 0.02) < 0.0015, f"{group}.{name} std {w.std().item():.4f}"
            assert abs(w.mean().item()) < 0.002, f"{group}.{name}"
            assert w.abs().max() < 0.1, f"{group}.{name}"  # no stray large values
        assert not torch.equal(tensors[f"A.{name}"], tensors[f"B.{name}"]), name


def test_fresh_init_linear_biases_are_zero():
    tensors = fresh_tensors()
    for name in LINEAR_BIASES:
        for group in ("A", "B"):
            assert tensors[f"{group}.{name}"].count_nonzero() == 0, f"{group}.{name}"


def test_fresh_init_layernorm_is_gamma_A_one_and_zero_otherwise():
    tensors = fresh_tensors()
    for norm in ("norm1", "norm2"):
        assert torch.equal(tensors[f"A.{norm}.weight"], torch.ones_like(tensors[f"A.{norm}.weight"]))
        for name in (f"A.{norm}.bias", f"B.{norm}.weight", f"B.{norm}.bias"):
            assert tensors[name].count_nonzero() == 0, name


def test_fresh_init_layernorms_are_identical_in_every_layer():
    tensors = fresh_tensors()
    method, layout = TLEG(), list(range(12))
    layers = [method.layer_tensors(tensors, i, layout, {"aux_depth": 12}) for i in layout]
    for name in NORMS:
        for i, layer in enumerate(layers):
            assert torch.equal(layer[name], layers[0][name]), f"layer {i} {name}"
    assert torch.equal(layers[0]["norm1.weight"], torch.ones(WIDTH))
    assert not torch.equal(layers[0]["mlp.fc1.weight"], layers[5]["mlp.fc1.weight"])  # linears do vary


def test_aux_net_starts_from_the_fresh_init():
    torch.manual_seed(0)
    aux = AuxNet(make_template(AUX_DEPTH), TLEG(), {"aux_depth": AUX_DEPTH})
    tensors = aux.learngene_tensors()
    assert torch.equal(tensors["A.norm1.weight"], torch.ones(WIDTH))
    assert tensors["B.norm1.weight"].count_nonzero() == 0
    assert abs(tensors["B.attn.qkv.weight"].std().item() - 0.02) < 0.0015


# --------------------------------------------------------------------------------- the learngene itself


def test_learngene_holds_only_A_B_inherited_and_head_tensors_two_per_block_tensor(learngene):
    groups = {k.split(".", 1)[0] for k in learngene.tensors}
    assert groups == {"A", "B", "inherited", "head"}
    for group in ("A", "B"):
        names = [k.split(".", 1)[1] for k in learngene.tensors if k.startswith(f"{group}.")]
        assert sorted(names) == sorted(BLOCK_TENSORS), group
    assert len([k for k in learngene.tensors if k[:2] in ("A.", "B.")]) == 2 * len(BLOCK_TENSORS)
    assert {k for k in learngene.tensors if k.startswith("inherited.")} == {
        f"inherited.{n}" for n in INHERITED_TENSORS
    }
    assert {k for k in learngene.tensors if k.startswith("head.")} == set(HEAD)
    block = dict(make_template(1).blocks[0].named_parameters())
    for name, param in block.items():
        assert learngene.tensors[f"A.{name}"].shape == learngene.tensors[f"B.{name}"].shape == param.shape


def test_learngene_size_does_not_depend_on_descendant_depth(learngene):
    block = sum(p.numel() for p in make_template(1).blocks[0].parameters())
    inherited = sum(learngene.tensors[f"inherited.{n}"].numel() for n in INHERITED_TENSORS)
    assert learngene.num_parameters() == 2 * block + inherited
    sizes = []
    for depth in DEPTHS:
        model, _ = expand(learngene, TLEG(), list(range(depth)), NUM_CLASSES)
        sizes.append(sum(p.numel() for p in model.parameters()))
        assert learngene.num_parameters() == 2 * block + inherited  # expanding changes nothing
    assert [b - a for a, b in zip(sizes, sizes[1:])] == [block * (b - a) for a, b in zip(DEPTHS, DEPTHS[1:])]


@pytest.mark.parametrize("aux_depth", [1, 2, 6])
def test_aux_net_learngene_size_does_not_depend_on_aux_depth(aux_depth):
    torch.manual_seed(0)
    aux = AuxNet(make_template(aux_depth), TLEG(), {"aux_depth": aux_depth})
    block = sum(p.numel() for p in make_template(1).blocks[0].parameters())
    assert sum(p.numel() for p in aux.learngene.parameters()) == 2 * block


# ------------------------------------------------------------------------------------------ layouts


@pytest.mark.parametrize("layout", [[0, 0, 1], [1, 0, 2], [0, 1, 3], [1, 2, 3]])
def test_custom_layout_other_than_0_to_L_minus_1_is_a_config_error(learngene, layout):
    with pytest.raises(ConfigError, match="layout"):
        TLEG().check_layout(layout, learngene.spec)
    with pytest.raises(ConfigError, match="layout"):
        expand(learngene, TLEG(), layout, NUM_CLASSES)


def test_empty_layout_is_a_config_error(learngene):
    with pytest.raises(ConfigError, match="depth"):
        TLEG().check_layout([], learngene.spec)


def test_default_layout_is_0_to_L_minus_1_and_accepted():
    method, spec = TLEG(), {"aux_depth": AUX_DEPTH}
    for depth in DEPTHS:
        assert method.default_layout(depth, spec) == list(range(depth))
        method.check_layout(list(range(depth)), spec)
    assert method.aux_layout(spec) == list(range(AUX_DEPTH))


@pytest.mark.parametrize("data", [{"aux_depth": 0}, {"aux_depth": "x"}, {"stages": 3}])
def test_bad_method_section_is_a_config_error(data):
    with pytest.raises(ConfigError):
        TLEG().parse_spec(data)
