"""The SWS paper presets carry the reference's descendant recipe."""

from __future__ import annotations

from learngene_core.config import load_config
from learngene_core.learngene import DescendantConfig, ExtractConfig
from sws import SWS


def test_paper_descendant_preset_has_label_smoothing_head_copy_drop_path_and_no_clipping():
    cfg = load_config("paper-descendant", [], DescendantConfig, "sws.configs")
    assert cfg.train.label_smoothing == 0.1 and cfg.train.max_grad_norm is None
    assert cfg.descendant.load_head is True and cfg.model.kwargs == {"drop_path_rate": 0.1}
    extract = load_config("paper", [], ExtractConfig, "sws.configs")
    assert extract.train.max_grad_norm is None
    for augment in (cfg.data.augment, extract.data.augment):
        assert (augment.auto_augment, augment.re_prob, augment.mixup, augment.cutmix, augment.repeats) == (
            "rand-m9-mstd0.5-inc1",
            0.25,
            0.8,
            1.0,
            3,
        )
    # the paper's 12-layer descendant needs no --stages: the default is the reference's layers_source
    assert SWS().default_layout(12, {"stages": extract.method["stages"]}) == [
        0,
        0,
        0,
        1,
        1,
        1,
        2,
        2,
        3,
        3,
        4,
        4,
    ]


def test_descendant_layouts_override_arrives_keyed_by_depth():
    cfg = load_config("tiny-descendant", ["descendant.layouts.3=[0,1,1]"], DescendantConfig, "sws.configs")
    assert cfg.descendant.layouts == {3: [0, 1, 1]}
