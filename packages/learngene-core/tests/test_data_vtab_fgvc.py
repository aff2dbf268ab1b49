"""VTAB-1k image lists and FGVC folders/annotations from a local path, through the data registry."""

from __future__ import annotations

import json

import pytest
import torch
from PIL import Image

from learngene_core.config import DataConfig
from learngene_core.data import DATASETS, build_datasets
from learngene_core.errors import DataError


def write_images(folder, names):
    for i, name in enumerate(names):
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (20 + i, 12), color=(10 * i % 255, 40, 90)).save(path)


def vtab_task(root, task="dtd", train=6, test=4, classes=3):
    folder = root / task
    names = [f"images/{i}.jpg" for i in range(train + test)]
    write_images(folder, names)
    lines = [f"{n} {i % classes}" for i, n in enumerate(names)]
    (folder / "train800val200.txt").write_text("\n".join(lines[:train]) + "\n")
    (folder / "train800.txt").write_text("\n".join(lines[: train - 2]) + "\n")
    (folder / "val200.txt").write_text("\n".join(lines[train - 2 : train]) + "\n")
    (folder / "test.txt").write_text("\n".join(lines[train:]) + "\n")
    return folder


def test_vtab_and_fgvc_are_registered():
    assert "vtab-1k" in DATASETS and "fgvc" in DATASETS


def test_vtab_task_from_root_reads_the_lists_and_resizes_directly(tmp_path):
    vtab_task(tmp_path)
    cfg = DataConfig(name="vtab-1k", path=str(tmp_path), image_size=32, options={"task": "dtd"})
    splits = build_datasets(cfg, seed=0)
    assert splits.sizes() == (6, 2, 4)  # val200 is a subset of train800val200 in this protocol
    assert splits.num_classes == 3
    image, label = splits.test[1]
    assert image.shape == (3, 32, 32) and image.dtype == torch.float32
    assert label.item() == 7 % 3


def test_vtab_tune_protocol_trains_on_train800_and_validates_on_val200(tmp_path):
    folder = vtab_task(tmp_path)
    cfg = DataConfig(name="vtab-1k", path=str(folder), image_size=16, options={"protocol": "tune"})
    assert build_datasets(cfg, seed=0).sizes() == (4, 2, 4)


def test_vtab_missing_list_and_bad_line_name_the_culprit(tmp_path):
    folder = vtab_task(tmp_path)
    (folder / "test.txt").unlink()
    with pytest.raises(DataError, match="test.txt"):
        build_datasets(DataConfig(name="vtab-1k", path=str(folder)), seed=0)
    (folder / "test.txt").write_text("images/0.jpg 1\nimages/1.jpg one\n")
    with pytest.raises(DataError, match=r"test.txt:2"):
        build_datasets(DataConfig(name="vtab-1k", path=str(folder)), seed=0)


def test_vtab_unknown_task_lists_the_tasks_found(tmp_path):
    vtab_task(tmp_path, "cifar")
    with pytest.raises(DataError, match=r"no task folder 'cifra'.*found: cifar"):
        build_datasets(DataConfig(name="vtab-1k", path=str(tmp_path), options={"task": "cifra"}), seed=0)


def test_fgvc_json_annotations(tmp_path):
    folder = tmp_path / "cub"
    names = [f"images/{c}/{i}.jpg" for c in ("a", "b") for i in range(3)]
    write_images(folder, names)
    labels = {n: int(n.split("/")[1] == "b") for n in names}
    (folder / "train.json").write_text(json.dumps({n: labels[n] for n in names[:2] + names[3:5]}))
    (folder / "test.json").write_text(json.dumps({names[2]: 0, names[5]: 1}))
    cfg = DataConfig(name="fgvc", path=str(tmp_path), image_size=24, options={"task": "cub"})
    splits = build_datasets(cfg, seed=0)
    assert splits.sizes() == (4, 2, 2) and splits.num_classes == 2
    assert [int(splits.test[i][1]) for i in range(2)] == [0, 1]
    assert splits.train[0][0].shape == (3, 24, 24)


def test_fgvc_class_folders(tmp_path):
    write_images(tmp_path, [f"train/{c}/{i}.png" for c in ("x", "y") for i in range(5)])
    write_images(tmp_path, [f"test/{c}/0.png" for c in ("x", "y")])
    splits = build_datasets(DataConfig(name="fgvc", path=str(tmp_path), image_size=16), seed=0)
    assert splits.num_classes == 2 and splits.class_names == ["x", "y"]
    assert len(splits.test) == 2 and len(splits.train) + len(splits.val) == 10


def test_fgvc_without_a_layout_says_what_is_expected(tmp_path):
    with pytest.raises(DataError, match="neither train.json nor a train/ folder"):
        build_datasets(DataConfig(name="fgvc", path=str(tmp_path)), seed=0)
