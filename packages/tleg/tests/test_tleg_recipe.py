"""The paper recipe around descendants: the aux head copied on the learngene's own classes, and `model.kwargs`
regularisation (drop_path_rate, drop_rate) reaching learngene and scratch descendants alike."""

from __future__ import annotations

import pytest
import torch
from timm.layers import DropPath

from learngene_core import experiment
from learngene_core.config import load_config
from learngene_core.learngene import DescendantConfig, build_descendant, same_label_space
from tleg import TLEG
from tleg.cli import main

NUM_CLASSES = 5  # as in conftest


def descendant_config(*overrides: str) -> DescendantConfig:
    return load_config(
        "tiny-descendant", ["train.progress=false", *overrides], DescendantConfig, "tleg.configs"
    )


ON_LEARNGENE_CLASSES = "data.classes=[0,1,2,3,4]"  # the extraction data's classes (digits 0-4)


def test_descendant_on_the_learngene_classes_copies_the_aux_head_by_default(learngene):
    cfg = descendant_config(ON_LEARNGENE_CLASSES)
    run = experiment.prepare_run(cfg)
    assert same_label_space(learngene, cfg.data, run.splits.num_classes)
    model, how = build_descendant("learngene", learngene, TLEG(), [0, 1], run)
    assert torch.equal(model.head.weight, learngene.tensors["head.weight"])
    assert torch.equal(model.head.bias, learngene.tensors["head.bias"])
    assert "fresh" not in how
    model, how = build_descendant("learngene", learngene, TLEG(), [0, 1], run, load_head=False)
    assert not torch.equal(model.head.weight, learngene.tensors["head.weight"]) and "2 fresh" in how


def test_descendant_on_other_classes_gets_a_fresh_head(learngene):
    cfg = descendant_config()  # digits 5-9: same class count, other label space
    run = experiment.prepare_run(cfg)
    assert run.splits.num_classes == NUM_CLASSES
    assert not same_label_space(learngene, cfg.data, run.splits.num_classes)
    model, how = build_descendant("learngene", learngene, TLEG(), [0, 1], run)
    assert not torch.equal(model.head.weight, learngene.tensors["head.weight"]) and "2 fresh" in how


@pytest.mark.parametrize("init", ["learngene", "scratch"])
def test_model_kwargs_regularisation_reaches_the_descendant(learngene, init):
    cfg = descendant_config("model.kwargs.drop_path_rate=0.1", "model.kwargs.drop_rate=0.2")
    model, _ = build_descendant(init, learngene, TLEG(), [0, 1, 2], experiment.prepare_run(cfg))
    last = model.blocks[-1]
    assert isinstance(last.drop_path1, DropPath) and last.drop_path1.drop_prob == pytest.approx(0.1)
    assert model.head_drop.p == pytest.approx(0.2)
    model.eval()  # eval mode: regularisation is off, the learngene's function is unchanged
    plain, _ = build_descendant(
        init, learngene, TLEG(), [0, 1, 2], experiment.prepare_run(descendant_config())
    )
    plain.load_state_dict(model.state_dict())
    x = torch.randn(2, 1, 16, 16)
    with torch.no_grad():
        assert torch.allclose(model(x), plain.eval()(x))


@pytest.mark.parametrize("key", ["depth=9", "img_size=32", "patch_size=2", "qkv_bias=false"])
def test_train_with_a_shape_key_in_model_kwargs_is_one_line_error(capsys, tmp_path, learngene_dir, key):
    out = tmp_path / "run"
    code = main(["train", "--init", f"learngene:{learngene_dir}", "--depth", "2", "--config", "tiny-descendant",
                 "--output-dir", str(out), f"model.kwargs.{key}"])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2 and len(err.splitlines()) == 1, err
    assert f"model.kwargs.{key.split('=')[0]}" in err and "drop_path_rate" in err
    assert not out.exists()


def test_train_no_load_head_flag_keeps_a_fresh_head_on_the_learngene_classes(capsys, tmp_path, learngene_dir):
    for flag, expected in (("--load-head", "copied"), ("--no-load-head", "fresh")):
        out = tmp_path / flag
        code = main(["train", "--init", f"learngene:{learngene_dir}", "--depth", "2", "--config",
                     "tiny-descendant", "--output-dir", str(out), flag, ON_LEARNGENE_CLASSES,
                     "train.epochs=1", "train.progress=false"])  # fmt: skip
        printed = capsys.readouterr().out
        assert code == 0, printed
        assert ("fresh: head.bias, head.weight" in printed) == (expected == "fresh"), printed


def test_paper_presets_carry_the_reference_recipe():
    from learngene_core.learngene import ExtractConfig

    cfg = load_config("paper-descendant", [], DescendantConfig, "tleg.configs")
    assert cfg.descendant.load_head is True and cfg.model.kwargs == {"drop_path_rate": 0.1}
    assert cfg.train.max_grad_norm is None and cfg.train.label_smoothing == 0.1
    assert load_config("paper", [], ExtractConfig, "tleg.configs").train.max_grad_norm is None


def test_paper_presets_turn_on_the_deit_augmentations():
    from learngene_core.config import AugmentConfig
    from learngene_core.learngene import ExtractConfig

    deit = AugmentConfig(auto_augment="rand-m9-mstd0.5-inc1", re_prob=0.25, mixup=0.8, cutmix=1.0, repeats=3)
    assert load_config("paper", [], ExtractConfig, "tleg.configs").data.augment == deit
    assert load_config("paper-descendant", [], DescendantConfig, "tleg.configs").data.augment == deit
    assert (
        load_config("tiny-descendant", [], DescendantConfig, "tleg.configs").data.augment == AugmentConfig()
    )
