"""The shipped presets load, and the paper's describe tiny9 + base9 from a DeiT-B: 18 instances, 27 descendants."""

from __future__ import annotations

import pytest
import torch

from learngene_core.config import ExperimentConfig, load_config, preset_names
from learngene_pool.aux import feature_pairs
from learngene_pool.config import AuxConfig, BuildConfig
from learngene_pool.pool import LearngenePool

PACKAGE = "learngene_pool.configs"
KIND = {"aux": AuxConfig, "tiny-aux": AuxConfig, "build": BuildConfig, "tiny-build": BuildConfig}


def config_class(name: str):
    return next((cls for prefix, cls in KIND.items() if name.startswith(prefix)), ExperimentConfig)


@pytest.mark.parametrize("name", preset_names(PACKAGE))
def test_every_preset_loads(name):
    assert load_config(name, [], config_class(name), PACKAGE) is not None


def test_paper_aux_presets_are_deit_tiny9_and_base9_with_the_papers_loss():
    for name, width, heads in (("aux-tiny9", 192, 3), ("aux-base9", 768, 12)):
        cfg = load_config(name, [], AuxConfig, PACKAGE)
        assert cfg.model.kwargs | {"depth": 9, "embed_dim": width, "num_heads": heads} == cfg.model.kwargs
        assert cfg.ancestry.model.name == "deit_base_patch16_224"
        assert (cfg.distill.alpha, cfg.distill.feature_weight, cfg.distill.temperature) == (0.9, 0.9, 1.0)
        assert cfg.positions == "[front,end]" and cfg.train.epochs == 100 and cfg.data.batch_size == 256
    # [front,end]: student blocks 2, 5, 8 of 9 against DeiT-B's 3, 7, 11 of 12
    assert feature_pairs("[front,end]", 9, 12, attention=False) == {
        "blocks.2": "blocks.3", "blocks.5": "blocks.7", "blocks.8": "blocks.11"
    }  # fmt: skip
    assert feature_pairs("[mid,end]", 9, 12, attention=False) == {
        "blocks.5": "blocks.7",
        "blocks.8": "blocks.11",
    }
    assert list(feature_pairs("[end]", 6, 12, attention=True)) == ["blocks.5", "blocks.5.attn"]


def test_paper_pool_has_18_instances_and_27_descendants():
    cfg = load_config("build", [], BuildConfig, PACKAGE)
    assert (cfg.train.epochs, cfg.data.batch_size, cfg.train.lr) == (50, 128, 1e-4)
    geometry = dict(img_size=224, patch_size=16, num_classes=1000, depth=9, mlp_ratio=4.0)
    with torch.device("meta"):
        pool = LearngenePool(
            [dict(geometry, embed_dim=192, num_heads=3), dict(geometry, embed_dim=768, num_heads=12)]
        )
    assert sum(len(m.blocks) for m in pool.instances) == 18
    assert len(pool.configs) == 27 and len(pool.stitches["0-1"]) == 8
    assert pool.stitches["0-1"][0].weight.shape == (768, 192)


def test_every_public_name_resolves_and_unknown_names_raise():
    import learngene_pool

    for name in learngene_pool.__all__:
        assert getattr(learngene_pool, name).__name__ == name
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        learngene_pool.nope  # noqa: B018
