"""The shipped presets: they load, each stage pair agrees on what both stages share, and the seed's split holds."""

from __future__ import annotations

import pytest

from l2c.config import PRESETS, load_l2c_config
from l2c.context import build_split
from l2c.protocol import overlap_warning
from l2c.run import SHARED
from learngene_core.config import preset_names, to_dict
from learngene_core.continual import TaskStream, manifest
from learngene_core.data import build_datasets
from learngene_core.testing import write_fake_cifar100

PAIRS = [(f"cl_lora_{d}_10t_vitb_in21k", f"l2c_lora_{d}_10t_vitb_in21k") for d in ("cifar100", "imr")]


def test_every_preset_loads():
    names = preset_names(PRESETS)
    assert {"tiny", *(name for pair in PAIRS for name in pair)} <= set(names)
    for name in names:
        load_l2c_config(name)


@pytest.mark.parametrize(("selector", "experts"), PAIRS)
def test_stage_presets_agree_on_the_shared_sections(selector, experts):
    first, second = to_dict(load_l2c_config(selector)), to_dict(load_l2c_config(experts))
    for key in SHARED:
        assert first[key] == second[key], key
    assert second["eval"]["topk"] == 5 and second["experts"]["align"]["centroids"] == 10


def test_seed_presets_warn_about_pretraining_overlap_and_tiny_does_not():
    cfg = load_l2c_config(PAIRS[0][0])
    warning = overlap_warning(cfg, tuple(range(100)))
    assert warning is not None and "imagenet-21k" in warning and "cifar100" in warning
    assert overlap_warning(load_l2c_config("tiny"), tuple(range(10))) is None
    own = load_l2c_config("tiny", ["pretraining.dataset=digits", "pretraining.classes=[0,1,2]"])
    assert "[0, 1, 2]" in overlap_warning(own, tuple(range(10)))


def test_cifar100_preset_cuts_a_cifar100_layout_into_ten_tasks_of_ten(tmp_path):
    write_fake_cifar100(tmp_path, n_train=600, n_test=200, num_classes=100)
    cfg = load_l2c_config(PAIRS[0][0], [f"data.path={tmp_path}"])
    splits = build_datasets(cfg.data, cfg.seed)
    stream = TaskStream(splits, build_split(cfg, splits.num_classes))
    record = manifest(stream)
    assert record["task_sizes"] == [10] * 10 and record["seed"] == 1993
    assert all(t["train"]["count"] > 0 and t["test"]["count"] == 20 for t in record["tasks"])
    x, y = stream.test(3)[0]
    assert x.shape == (3, 224, 224) and 30 <= int(y) < 40
