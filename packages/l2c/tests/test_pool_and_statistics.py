"""The adapter pool (peft LoRA on timm attention projections) and the class statistics / alignment."""

from __future__ import annotations

import pytest
import torch

from l2c.align import align_head
from l2c.config import AlignConfig, LoraSettings
from l2c.statistics import class_statistics, sample_features
from learngene_core.errors import ModelError

DIM = 32  # the width of conftest's tiny ViT


def test_new_adapter_starts_as_the_backbone_and_copies_are_exact(make_pool, images):
    pool = make_pool()
    pool.add("first", LoraSettings(rank=2))
    plain = pool.peft.get_base_model()
    with pool.peft.disable_adapter():
        base = plain(images)
    torch.testing.assert_close(pool.features(images, "first"), base)  # B = 0: LoRA adds nothing yet
    with torch.no_grad():
        for p in pool.adapter_parameters("first"):
            p.normal_()
    pool.add("b", LoraSettings(rank=2), init_from="first")
    torch.testing.assert_close(pool.features(images, "b"), pool.features(images, "first"))
    assert not torch.allclose(pool.features(images, "first"), base)


def test_lora_sits_on_attention_projections_and_only_the_active_adapter_trains(make_pool):
    pool = make_pool()
    pool.add("first", LoraSettings(rank=2, depth=1))
    pool.add("b", LoraSettings(rank=2))
    assert pool.count("first") == 2 * (DIM + 3 * DIM)  # rank x (in + out) of block 0's qkv only
    assert pool.count("b") == 2 * 2 * (DIM + 3 * DIM)
    pool.activate("b")
    trainable = {n for n, p in pool.named_parameters() if p.requires_grad}
    assert trainable and all(".b." in n and "attn.qkv" in n for n in trainable)
    pool.activate(None)
    assert not any(p.requires_grad for p in pool.parameters())


def test_adapter_errors_name_the_culprit(make_pool):
    pool = make_pool()
    pool.add("first", LoraSettings(rank=2))
    with pytest.raises(ModelError, match="no adapter 'zzz'"):
        pool.features(torch.zeros(1, 1, 8, 8), "zzz")
    pool.add("wide", LoraSettings(rank=4))
    with pytest.raises(ModelError, match="adapter 'first'.*shape"):
        pool.load_adapter("first", pool.adapter_state("wide"))


def test_statistics_match_the_data_and_samples_follow_them():
    generator = torch.Generator().manual_seed(0)
    features = torch.cat(
        [torch.randn(400, 3, generator=generator) * 0.5 + 4, torch.randn(400, 3, generator=generator) * 2]
    )
    labels = torch.tensor([0] * 400 + [1] * 400)
    stats = class_statistics(features, labels, centroids=1, seed=0)
    torch.testing.assert_close(stats.means[0][0], features[:400].mean(0))
    x, y = sample_features(stats, 4000, 0.0, generator)
    assert torch.allclose(x[y == 1].std(0), torch.full((3,), 2.0), atol=0.15)
    assert torch.allclose(x[y == 0].mean(0), torch.full((3,), 4.0), atol=0.1)


def test_multi_centroid_statistics_find_the_modes():
    generator = torch.Generator().manual_seed(0)
    modes = torch.cat(
        [torch.randn(50, 2, generator=generator) * 0.1 - 5, torch.randn(50, 2, generator=generator) * 0.1 + 5]
    )
    stats = class_statistics(modes, torch.zeros(100, dtype=torch.long), centroids=2, seed=0)
    centres = stats.means[0].sort(0).values
    torch.testing.assert_close(centres, torch.tensor([[-5.0, -5.0], [5.0, 5.0]]), atol=0.1, rtol=0)
    assert (stats.variances[0] < 0.05).all()


def test_alignment_loss_falls_and_separates_two_gaussians():
    generator = torch.Generator().manual_seed(0)
    features = torch.cat(
        [torch.randn(200, 4, generator=generator) + 2, torch.randn(200, 4, generator=generator) - 2]
    )
    stats = class_statistics(features, torch.tensor([0] * 200 + [1] * 200), 1, 0)
    head = torch.nn.Linear(4, 5)
    torch.nn.init.zeros_(head.weight)
    cfg = AlignConfig(epochs=1, samples_per_centroid=64, lr=0.05)
    first = align_head(head, stats, 2, cfg, seed=0)
    later = align_head(head, stats, 2, AlignConfig(epochs=10, samples_per_centroid=64, lr=0.05), seed=1)
    assert later < first
    assert (head(features)[:, :2].argmax(1) == torch.tensor([0] * 200 + [1] * 200)).float().mean() > 0.95
