"""Injection into timm ViT / Swin / ConvNeXt: targets, freezing, parameter count, merge, save/load, errors."""

from __future__ import annotations

import pytest
import timm
import torch

from learngene_core.errors import CheckpointError, ConfigError
from snell import SnellConfig, SnellModel, get_snell_model
from snell.layers import SnellLinear

KINDS = ["vit", "swin", "convnext"]


@pytest.mark.parametrize("kind", KINDS)
def test_default_targets_are_the_attention_and_mlp_linears_and_everything_else_is_frozen(make_backbone, kind):
    model = get_snell_model(make_backbone(kind), SnellConfig(rank=4))
    wrapped = [n.rsplit(".", 1)[-1] for n, _ in model.snell_layers()]
    expected = {"vit": {"qkv", "proj", "fc1", "fc2"}, "swin": {"qkv", "proj", "fc1", "fc2"}}
    assert set(wrapped) == expected.get(kind, {"fc1", "fc2"})
    for name, p in model.named_parameters():
        is_extra = ".head." in name or name.endswith("cls_token") or name.startswith("model.head")
        assert p.requires_grad == ("snell_" in name or is_extra), name


@pytest.mark.parametrize("rank", [8, 32])
def test_vit_b16_trainable_parameters_are_165888_r_plus_head_and_cls_token(rank):
    with torch.device("meta"):
        vit = timm.create_model("vit_base_patch16_224", num_classes=100)
    counts = get_snell_model(vit, SnellConfig(rank=rank)).parameter_counts()
    assert counts["factors"] == 165_888 * rank
    assert counts["trainable"] == 165_888 * rank + (768 * 100 + 100) + 768


@pytest.mark.parametrize("kind", KINDS)
def test_merge_and_unload_returns_a_plain_model_with_the_same_outputs(make_backbone, images, kind):
    model = get_snell_model(make_backbone(kind), SnellConfig(rank=4, sparsity=0.5)).eval()
    with torch.no_grad():
        for _, layer in model.snell_layers():  # move off the init so the update is not tiny
            layer.snell_in.mul_(30)
        before = model(images)
        plain = model.merge_and_unload()
        after = plain(images)
    assert not any(isinstance(m, SnellLinear) for m in plain.modules())
    assert type(plain).__module__.startswith("timm.")
    assert (before - make_backbone(kind).eval()(images)).abs().max() > 1e-3  # the update matters
    torch.testing.assert_close(after, before, atol=1e-5, rtol=0)


def test_disable_adapters_gives_the_base_model(make_backbone, images):
    base = make_backbone("vit").eval()
    model = get_snell_model(make_backbone("vit"), SnellConfig(rank=4)).eval()
    with torch.no_grad(), model.disable_adapters():
        torch.testing.assert_close(model(images), base(images))
    assert not torch.allclose(model(images), base(images))


def test_training_changes_only_factors_and_head_and_leaves_base_weights_bit_identical(make_backbone, images):
    model = get_snell_model(make_backbone("vit"), SnellConfig(rank=4, sparsity=0.3)).train()
    frozen = {n: p.detach().clone() for n, p in model.named_parameters() if not p.requires_grad}
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    losses = []
    for _ in range(5):
        loss = torch.nn.functional.cross_entropy(model(images), torch.tensor([1, 3]))
        loss.backward()
        opt.step()
        opt.zero_grad()
        losses.append(loss.item())
    assert losses[-1] < losses[0]
    for name, p in model.named_parameters():
        if name in frozen:
            assert torch.equal(p, frozen[name]), name


def test_save_and_load_round_trip_is_exact_and_holds_only_trained_tensors(make_backbone, images, tmp_path):
    model = get_snell_model(make_backbone("vit"), SnellConfig(rank=4, sparsity=0.4, mask="binary")).eval()
    with torch.no_grad():
        model.model.head.weight.add_(1.0)
    model.save_pretrained(tmp_path / "adapter")
    loaded = SnellModel.from_pretrained(make_backbone("vit", seed=0), tmp_path / "adapter").eval()
    assert loaded.snell_config == model.snell_config
    assert set(loaded.adapter_state_dict()) == set(model.adapter_state_dict())
    assert not any("base_layer" in k for k in model.adapter_state_dict())
    for k, v in model.adapter_state_dict().items():
        assert torch.equal(loaded.adapter_state_dict()[k], v)
    with torch.no_grad():
        assert torch.equal(loaded(images), model(images))


def test_adapter_of_another_backbone_is_refused(make_backbone, tmp_path):
    get_snell_model(make_backbone("vit"), SnellConfig(rank=4)).save_pretrained(tmp_path / "a")
    with pytest.raises(CheckpointError, match="does not fit"):
        SnellModel.from_pretrained(make_backbone("swin"), tmp_path / "a")


@pytest.mark.parametrize(
    ("config", "error"),
    [
        (
            b'{"snell": ',
            r"adapter_config.json is not valid JSON .*; is it truncated\?",
        ),  # was a JSONDecodeError
        (b'{"snell": "x"}', r"adapter_config.json: 'snell' is missing or not a mapping"),
        (b'{"snel": {}}', r"adapter_config.json: 'snell' is missing or not a mapping"),  # was a KeyError
    ],
    ids=["truncated", "not-a-mapping", "missing"],
)
def test_a_damaged_adapter_config_is_one_error_naming_the_file(make_backbone, tmp_path, config, error):
    get_snell_model(make_backbone("vit"), SnellConfig(rank=4)).save_pretrained(tmp_path / "a")
    (tmp_path / "a" / "adapter_config.json").write_bytes(config)
    with pytest.raises(CheckpointError, match=error):
        SnellModel.from_pretrained(make_backbone("vit"), tmp_path / "a")


def test_targets_that_match_nothing_list_the_candidates(make_backbone):
    with pytest.raises(ConfigError, match=r"matched no nn.Linear.*candidates: .*fc1.*qkv"):
        get_snell_model(make_backbone("vit"), SnellConfig(target_modules=["query"]))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"sparsity": 1.0}, r"sparsity must be in \[0, 1\)"),
        ({"sparsity": -0.1}, r"sparsity must be in \[0, 1\)"),
        ({"rank": 7}, "multiple of 2"),
        ({"rank": 0}, "positive integer"),
        ({"kernel": "gaussian"}, "unknown kernel"),
    ],
)
def test_bad_settings_are_config_errors(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        SnellConfig(**kwargs)


def test_linear_kernel_allows_odd_rank_and_starts_as_the_base_model(make_backbone, images):
    base = make_backbone("vit").eval()
    model = get_snell_model(make_backbone("vit"), SnellConfig(rank=3, kernel="linear")).eval()
    torch.testing.assert_close(model(images), base(images))


@pytest.mark.parametrize("proj_dropout", [False, True])
def test_attention_projection_branch_gets_no_dropout_unless_asked(make_backbone, proj_dropout):
    config = SnellConfig(rank=4, dropout=0.5, drop_path=0.0, proj_dropout=proj_dropout)
    model = get_snell_model(make_backbone("vit"), config).train()
    for name, layer in model.snell_layers():
        x = torch.randn(2, 5, layer.base_layer.in_features, generator=torch.Generator().manual_seed(3))
        torch.manual_seed(0)
        first = layer(x)
        torch.manual_seed(1)
        second = layer(x)
        random = not torch.equal(first, second)  # dropout on the branch input changes the output
        assert random == (proj_dropout or not name.endswith("attn.proj")), name
