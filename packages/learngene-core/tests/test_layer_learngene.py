"""Layer learngenes (Heur-/Auto-Learngene): widenable backbones, Net2Wider, inheriting whole ancestry layers."""

from __future__ import annotations

import pytest
import timm
import torch

from learngene_core.config import ModelConfig
from learngene_core.errors import ConfigError, ModelError
from learngene_core.learngene.inherit import (
    build_layer_descendant,
    layer_prefixes,
    make_layer_learngene,
    placement_of,
    top_k,
    width_kwargs,
)
from learngene_core.learngene.widen import net2wider, widen_layer
from learngene_core.models import build_model

VGG = dict(widths=[4, 6, 6, 8], pool_after=[1, 3], hidden=16, in_chans=1, num_classes=3)
VIT = dict(img_size=16, patch_size=4, embed_dim=32, depth=3, num_heads=2, mlp_ratio=2.0, num_classes=3,
           class_token=False, global_pool="avg", in_chans=1)  # fmt: skip


def vgg(**kwargs):
    return timm.create_model("learngene_vgg", **{**VGG, **kwargs})


def vit(**kwargs):
    return timm.create_model("vit_learngene", **{**VIT, **kwargs})


@pytest.mark.parametrize("make", [vgg, vit], ids=["vgg", "vit"])
def test_widening_every_layer_without_noise_keeps_the_function(make):
    torch.manual_seed(0)
    model = make().eval()
    x = torch.randn(5, 1, 16, 16)
    before = model(x)
    generator = torch.Generator().manual_seed(1)
    for index in range(len(layer_prefixes(model))):
        widen_layer(model, index, 1.5, noise=0.0, generator=generator)
    torch.testing.assert_close(model(x), before, atol=1e-5, rtol=1e-4)


def test_new_width_is_floor_of_one_and_a_half_times_the_old():
    model = vgg()
    assert [widen_layer(model, i) for i in range(4)] == [6, 9, 9, 12]
    assert model.widths == [6, 9, 9, 12] and model.features[1].in_channels == 6
    assert model.pre_logits[0].in_features == 12
    block = vit().blocks[1].mlp
    old = block.fc1.out_features
    model = vit()
    assert widen_layer(model, 1) == int(1.5 * old) == model.blocks[1].mlp.fc2.in_features


def test_noise_perturbs_only_the_new_units():
    layer, after = torch.nn.Linear(3, 4), torch.nn.Linear(4, 2)
    wide, _ = net2wider(layer, after, 6, noise=1e-3, generator=torch.Generator().manual_seed(0))
    assert torch.equal(wide.weight[:4], layer.weight)
    copies_of_old_units = (wide.weight[4:, None] - layer.weight[None]).abs().amax(-1).min(-1).values
    assert (copies_of_old_units > 0).all() and (copies_of_old_units < 1e-2).all()


@pytest.mark.parametrize("make", [vgg, vit], ids=["vgg", "vit"])
def test_a_widened_model_is_rebuilt_from_its_width_kwargs(make):
    model = make()
    widen_layer(model, 1)
    name = "learngene_vgg" if make is vgg else "vit_learngene"
    rebuilt = timm.create_model(name, **{**(VGG if make is vgg else VIT), **width_kwargs(model)})
    rebuilt.load_state_dict(model.state_dict(), strict=True)


def learngene_of(model, name, layers, **kwargs):
    cfg = ModelConfig("timm", name, {k: v for k, v in (VGG if name == "learngene_vgg" else VIT).items()
                                     if k not in ("num_classes", "in_chans")})  # fmt: skip
    return make_layer_learngene("test", model, cfg, layers, {"k": len(layers)}, {"input_shape": [1, 16, 16]})


def test_descendant_inherits_the_learngene_layers_bit_for_bit_and_nothing_else():
    torch.manual_seed(0)
    ancestry = vgg()
    widen_layer(ancestry, 2)
    learngene = learngene_of(ancestry, "learngene_vgg", [2, 3])
    model, inheritance, mapping = build_layer_descendant(
        learngene, "learngene", num_classes=5, input_shape=(1, 16, 16), seed=3
    )
    assert mapping == {2: 2, 3: 3} and model.widths == ancestry.widths
    state, source = model.state_dict(), ancestry.state_dict()
    for name, how in inheritance.items():
        if name.startswith(("features.2.", "features.3.")):
            assert how == "copied" and torch.equal(state[name], source[name])
        else:
            assert how == "fresh"
            if name.endswith("weight"):  # biases start at zero in both
                assert state[name].shape != source[name].shape or not torch.equal(state[name], source[name])
    assert model.head.out_features == 5


def test_random_init_is_the_same_architecture_with_nothing_inherited():
    ancestry = vit()
    learngene = learngene_of(ancestry, "vit_learngene", [2])
    model, inheritance, mapping = build_layer_descendant(
        learngene, "random", num_classes=3, input_shape=(1, 16, 16)
    )
    assert mapping == {} and set(inheritance.values()) == {"fresh"}
    assert [k for k in model.state_dict()] == [k for k in ancestry.state_dict()]


def test_top_placement_stacks_the_learngene_on_the_last_layers():
    learngene = learngene_of(vit(), "vit_learngene", [0, 2])
    assert placement_of(learngene, 5, "top") == {3: 0, 4: 2}
    with pytest.raises(ConfigError, match="outside the descendant"):
        placement_of(learngene, 2, "same")


def test_layer_index_outside_the_ancestry_is_refused():
    with pytest.raises(ConfigError, match="layer 7 is outside the ancestry.*0..3"):
        learngene_of(vgg(), "learngene_vgg", [1, 7])


def test_k_larger_than_the_layer_count_is_refused():
    assert top_k([0.3, 0.1, 0.2], 2, largest=False) == [1, 2]
    assert top_k([0.3, 0.1, 0.2], 2, largest=True) == [0, 2]
    with pytest.raises(ConfigError, match="k=4 .* layer count 3"):
        top_k([0.3, 0.1, 0.2], 4, largest=False)


def test_descendant_of_another_architecture_is_refused():
    learngene = learngene_of(vgg(), "learngene_vgg", [3])
    with pytest.raises(ModelError, match="architecture mismatch.*vit_learngene.*learngene_vgg"):
        build_layer_descendant(learngene, "learngene", num_classes=3, input_shape=(1, 16, 16),
                               model=ModelConfig("timm", "vit_learngene"))  # fmt: skip
    narrower = ModelConfig("timm", "learngene_vgg", {"widths": [4, 6, 6, 6]})
    with pytest.raises(ModelError, match="architecture mismatch: descendant tensor features.3.weight"):
        build_layer_descendant(learngene, "learngene", num_classes=3, input_shape=(1, 16, 16), model=narrower)


def test_vgg_builds_through_the_core_model_registry():
    model = build_model(
        ModelConfig("timm", "learngene_vgg", {"hidden": 8}), num_classes=4, input_shape=(3, 32, 32)
    )
    assert len(model.features) == 13 and model.widths[-1] == 512
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 4)
