"""Tests of learngene_core.pretrained: a backbone gets every weight of a local checkpoint but the classifier."""

from __future__ import annotations

import pytest
import torch

from learngene_core.checkpoint import save_weights
from learngene_core.config import ModelConfig
from learngene_core.errors import CheckpointError
from learngene_core.pretrained import build_backbone, resolve_checkpoint

TINY = ModelConfig(
    name="vit_tiny_patch16_224", kwargs={"patch_size": 4, "embed_dim": 32, "depth": 1, "num_heads": 2}
)


def test_backbone_loads_all_but_the_classifier(tmp_path):
    source = build_backbone(TINY, num_classes=5, input_shape=(1, 8, 8), seed=1)
    save_weights(source, tmp_path / "vit.safetensors")
    cfg = ModelConfig(name=TINY.name, kwargs=TINY.kwargs, checkpoint=str(tmp_path / "vit.safetensors"))
    model = build_backbone(cfg, num_classes=3, input_shape=(1, 8, 8), seed=2)
    assert torch.equal(model.blocks[0].attn.qkv.weight, source.blocks[0].attn.qkv.weight)
    assert model.head.out_features == 3
    features = build_backbone(cfg, num_classes=0, input_shape=(1, 8, 8), seed=3)
    assert torch.equal(features.pos_embed, source.pos_embed)


def test_checkpoint_of_another_model_and_unknown_assets_are_one_line_errors(tmp_path):
    other = ModelConfig(name=TINY.name, kwargs={**TINY.kwargs, "embed_dim": 16})
    save_weights(
        build_backbone(other, num_classes=5, input_shape=(1, 8, 8), seed=1), tmp_path / "o.safetensors"
    )
    cfg = ModelConfig(name=TINY.name, kwargs=TINY.kwargs, checkpoint=str(tmp_path / "o.safetensors"))
    with pytest.raises(CheckpointError, match="is not a checkpoint of this backbone"):
        build_backbone(cfg, num_classes=5, input_shape=(1, 8, 8), seed=0)
    with pytest.raises(CheckpointError, match="no package ships assets"):
        resolve_checkpoint("package:vit.safetensors")
    with pytest.raises(CheckpointError, match="no shipped checkpoint 'nope' in learngene_core/assets"):
        resolve_checkpoint("package:nope", "learngene_core")


def test_a_backbone_file_is_read_as_importers_read_checkpoints(tmp_path):
    """One reader (`checkpoint.read_state_dict`) for backbones and importers: a pickle whose state dict holds
    something other than tensors is one CheckpointError naming the file, not an AttributeError at its shapes."""
    state = build_backbone(TINY, num_classes=5, input_shape=(1, 8, 8), seed=1).state_dict()
    torch.save({"model": {**state, "pos_embed": "not a tensor"}}, tmp_path / "odd.pth")
    cfg = ModelConfig(name=TINY.name, kwargs=TINY.kwargs, checkpoint=str(tmp_path / "odd.pth"))
    with pytest.raises(
        CheckpointError, match=r"odd.pth holds no state dict \(a mapping of names to tensors\)"
    ):
        build_backbone(cfg, num_classes=5, input_shape=(1, 8, 8), seed=0)
    torch.save(
        {"model": state}, tmp_path / "deit-style.pth"
    )  # a training script's {"model": ...} still loads
    cfg = ModelConfig(name=TINY.name, kwargs=TINY.kwargs, checkpoint=str(tmp_path / "deit-style.pth"))
    assert torch.equal(
        build_backbone(cfg, num_classes=3, input_shape=(1, 8, 8), seed=2).pos_embed, state["pos_embed"]
    )
