"""SN-Net paired stitching: config counts, stitch-layer sharing, Identity iff equal widths, the sampling rule."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from learngene_core.errors import ConfigError
from learngene_pool.pool import LearngenePool
from learngene_pool.stitching import descendant_depth, paired_positions, stitch_configs, stitch_pairs

GEOMETRY = dict(img_size=8, patch_size=4, in_chans=1, num_classes=3, class_token=False, global_pool="avg")


def vit(width: int, heads: int, depth: int = 3) -> dict:
    return dict(GEOMETRY, embed_dim=width, num_heads=heads, depth=depth, mlp_ratio=2.0)


@pytest.mark.parametrize("depth, count", [(2, 4), (3, 7), (6, 16), (9, 25), (12, 34)])
def test_a_pair_of_depth_d_instances_has_1_plus_3_d_minus_1_configs(depth, count):
    positions = paired_positions(depth)
    assert len(positions) == count == 1 + 3 * (depth - 1)
    assert all(abs(a - b) <= 1 for a, b, _ in positions)
    assert len(set((a, b) for a, b, _ in positions)) == count  # no duplicates
    assert {s for _, _, s in positions} == set(range(depth - 1))  # d-1 stitch layers


def test_configs_of_a_window_share_its_stitch_layer():
    positions = paired_positions(4)
    assert positions[:4] == [(0, 0, 0), (0, 1, 0), (1, 0, 0), (1, 1, 0)]
    assert positions[4:7] == [(1, 2, 1), (2, 1, 1), (2, 2, 1)]


def test_config_ids_are_instances_alone_then_each_pair_in_order():
    configs = stitch_configs(3, 9)
    assert len(configs) == 3 + 3 * 25
    assert [c.alone for c in configs[:3]] == [True] * 3 and not any(c.alone for c in configs[3:])
    # the paper's ids with [tiny9, small9, base9]: 0 tiny alone, 2 base alone, 28..52 tiny -> base
    assert {(c.front, c.end) for c in configs[28:53]} == {(0, 2)}
    assert [c.id for c in configs] == list(range(len(configs)))
    assert stitch_pairs(3, nearest=True) == [(0, 1), (1, 2)]
    assert len(stitch_configs(3, 9, nearest=True)) == 3 + 2 * 25


def test_descendant_depth_counts_front_and_end_blocks():
    configs = {(c.front_block, c.end_block): c for c in stitch_configs(2, 4)[2:]}
    assert descendant_depth(configs[(1, 1)], 4) == 4  # same position: the full depth
    assert descendant_depth(configs[(1, 2)], 4) == 3  # skip a block
    assert descendant_depth(configs[(2, 1)], 4) == 5  # repeat a position
    assert descendant_depth(stitch_configs(2, 4)[0], 4) == 4


def test_stitch_layer_is_identity_iff_widths_are_equal():
    pool = LearngenePool([vit(16, 2), vit(16, 4), vit(32, 4)])
    assert len(pool.stitches) == 3
    for key, layers in pool.stitches.items():
        assert len(layers) == pool.depth - 1
        if key == "0-1":
            assert all(isinstance(layer, nn.Identity) for layer in layers)
        else:
            assert all(isinstance(layer, nn.Linear) for layer in layers)
            assert layers[0].weight.shape == (32, 16)


def test_training_samples_one_config_per_forward_from_train_ids(monkeypatch):
    pool = LearngenePool([vit(16, 2), vit(32, 4)], train_ids=[3, 6])
    seen = []
    real_run = pool.run
    monkeypatch.setattr(pool, "run", lambda cfg_id, x: seen.append(cfg_id) or real_run(cfg_id, x))
    x = torch.randn(2, 1, 8, 8)
    torch.manual_seed(0)
    pool.train()
    for _ in range(40):
        pool(x)
    assert set(seen) == {3, 6} and 10 < seen.count(3) < 30
    pool.eval()
    seen.clear()
    with pool.using(5):
        pool(x)
    pool(x)
    assert seen == [5, 1]  # eval: the active config (default the widest instance alone)


def test_instances_of_different_depths_are_refused():
    with pytest.raises(ConfigError, match=r"one depth.*\[2, 3\]"):
        LearngenePool([vit(16, 2, depth=2), vit(32, 4, depth=3)])


@pytest.mark.parametrize("bad", [-1, 9, 100])
def test_unknown_config_id_names_the_valid_range(bad):
    pool = LearngenePool([vit(16, 2), vit(32, 4)])
    with pytest.raises(ConfigError, match=rf"unknown config id {bad}; this pool has configs 0\.\.8"):
        pool.descendant(bad)
    with pytest.raises(ConfigError, match="0..8"):
        LearngenePool([vit(16, 2), vit(32, 4)], train_ids=[bad])
