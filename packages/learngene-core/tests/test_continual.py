"""Tests of learngene_core.continual: splits, per-task views, manifests and the accuracy-matrix metrics."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from learngene_core.config import DataConfig
from learngene_core.continual import (
    AccuracyMatrix,
    TaskSplit,
    TaskStream,
    accuracy_per_task,
    backward_transfer,
    check_manifest,
    cumulative_average_accuracy,
    final_average_accuracy,
    final_forgetting,
    load_split,
    make_split,
    save_manifest,
    task_identity_accuracy,
    task_recall_at_k,
)
from learngene_core.data import build_datasets
from learngene_core.errors import DataError

NAN = math.nan
# a[i, j]: accuracy on task i after learning task j
HAND = np.array([[0.9, 0.8, 0.7], [NAN, 0.6, 0.5], [NAN, NAN, 0.4]])


@pytest.fixture(scope="module")
def digits():
    return build_datasets(DataConfig(name="digits"), 0)


# ------------------------------------------------------------------------------------------------ metrics


def test_metrics_of_a_hand_written_matrix():
    assert final_average_accuracy(HAND) == pytest.approx((0.7 + 0.5 + 0.4) / 3)
    assert cumulative_average_accuracy(HAND) == pytest.approx(
        (0.9 + (0.8 + 0.6) / 2 + (0.7 + 0.5 + 0.4) / 3) / 3
    )
    assert final_forgetting(HAND) == pytest.approx(((0.9 - 0.7) + (0.6 - 0.5)) / 2)
    assert backward_transfer(HAND) == pytest.approx(((0.7 - 0.9) + (0.5 - 0.6)) / 2)


def test_improving_task_gives_negative_forgetting_and_positive_transfer():
    m = np.array([[0.5, 0.9], [NAN, 0.8]])
    assert final_forgetting(m) == pytest.approx(-0.4)
    assert backward_transfer(m) == pytest.approx(0.4)
    assert final_forgetting(m[:1, :1]) == backward_transfer(m[:1, :1]) == 0.0


def test_accuracy_matrix_records_summarises_and_round_trips(tmp_path):
    matrix = AccuracyMatrix(3)
    for j in range(3):
        matrix.record(j, HAND[: j + 1, j].tolist(), task_identity=0.5 + 0.1 * j)
    assert matrix.summary() == pytest.approx(
        {
            "faa": final_average_accuracy(HAND),
            "caa": cumulative_average_accuracy(HAND),
            "ffm": final_forgetting(HAND),
            "bwt": backward_transfer(HAND),
            "task_identity": 0.7,
        }
    )
    assert matrix.summary(0)["faa"] == pytest.approx(0.9)
    assert matrix.line(1).startswith(
        "after task 1: acc [80.0 60.0]  FAA 70.00 CAA 80.00 FFM 10.00 BWT -10.00"
    )
    matrix.save_json(tmp_path / "acc.json")
    again = AccuracyMatrix.from_dict(json.loads((tmp_path / "acc.json").read_text()))
    np.testing.assert_array_equal(again.values, matrix.values)
    assert again.summary() == matrix.summary()
    png = matrix.plot(tmp_path / "acc.png", title="hand")
    assert png.read_bytes()[:4] == b"\x89PNG"
    with pytest.raises(DataError, match="record 2 accuracies"):
        matrix.record(1, [0.5])


def test_task_identity_and_recall_at_k():
    scores = torch.tensor([[0.1, 0.7, 0.2], [0.5, 0.3, 0.2], [0.2, 0.3, 0.5]])
    true = torch.tensor([2, 0, 1])
    assert task_identity_accuracy(scores.argmax(1), true) == pytest.approx(1 / 3)
    assert task_recall_at_k(scores, true, 1) == pytest.approx(1 / 3)
    assert task_recall_at_k(scores, true, 2) == pytest.approx(1.0)
    assert task_recall_at_k(scores, true, 5) == 1.0


# -------------------------------------------------------------------------------------------------- splits


def test_split_is_seeded_and_cut_pycil_style():
    a, b, c = (
        make_split(196, task_size=20, seed=1993),
        make_split(196, task_size=20, seed=1993),
        make_split(196, task_size=20, seed=1),
    )
    assert a == b and a.order != c.order and sorted(a.order) == list(range(196))
    assert a.task_sizes == (20,) * 9 + (16,)
    assert make_split(10, num_tasks=5).order == tuple(range(10))
    assert make_split(100, task_size=10, first_task_size=50).task_sizes == (50,) + (10,) * 5
    split = make_split(10, num_tasks=5, seed=0)
    assert split.offsets == (0, 2, 4, 6, 8, 10) and split.seen_classes(2) == 6
    assert [split.task_of(label) for label in range(10)] == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4]
    assert split.task_of_labels().tolist() == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4]
    assert [set(t) for t in split.tasks()] == [set(split.order[2 * t : 2 * t + 2]) for t in range(5)]


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (
            lambda: make_split(10, num_tasks=5, order=[0, 1, 2, 3, 4, 5, 6, 7, 8, 3]),
            r"class order repeats class 3 \(positions 3 and 9\)",
        ),
        (lambda: TaskSplit.from_tasks([[0, 1], [2, 1]]), "tasks overlap: class 1 is in task 0 and task 1"),
        (lambda: make_split(10, num_tasks=3), "10 classes do not split into 3 equal tasks"),
        (
            lambda: make_split(10, num_tasks=2, order=[0, 1, 2, 3, 4, 5, 6, 7, 8, 12]),
            "label 12 is not a class",
        ),
        (lambda: TaskSplit((0, 1, 2), (2, 2)), "sum to 4 classes"),
        (lambda: make_split(10), "exactly one of num_tasks and task_size"),
    ],
)
def test_bad_splits_fail_with_one_line(make, message):
    with pytest.raises(DataError, match=message) as info:
        make()
    assert "\n" not in str(info.value)


# -------------------------------------------------------------------------------------------------- stream


def test_stream_views_are_class_disjoint_cover_the_data_and_use_order_positions(digits):
    split = make_split(10, num_tasks=5, seed=3)
    stream = TaskStream(digits, split)
    seen: set[int] = set()
    for t in range(5):
        view = stream.train(t)
        labels = set(view.targets)
        assert labels == set(range(2 * t, 2 * t + 2))
        original = {digits.train.targets[i] for i in view.indices}
        assert original == set(split.tasks()[t])
        assert seen.isdisjoint(view.indices)
        seen |= set(view.indices)
        x, y = view[0]
        assert x.shape == (1, 8, 8) and int(y) == split.order.index(digits.train.targets[view.indices[0]])
    assert seen == set(range(len(digits.train)))
    assert set(stream.test_seen(2).targets) == set(range(6))
    assert len(stream.train_seen(4)) == len(digits.train)


def test_oracle_predictor_scores_one_on_every_task(digits):
    stream = TaskStream(digits, make_split(10, num_tasks=5, seed=3))
    lookup = {}
    for t in range(5):
        for i in range(len(stream.test(t))):
            x, y = stream.test(t)[i]
            lookup[x.numpy().tobytes()] = int(y)

    def oracle(inputs):
        return torch.tensor([lookup[x.numpy().tobytes()] for x in inputs])

    assert accuracy_per_task(oracle, stream, 4, batch_size=50) == [1.0] * 5
    assert accuracy_per_task(lambda x: torch.full((len(x),), -1), stream, 1) == [0.0, 0.0]


def test_manifest_hashes_are_stable_and_detect_another_order(digits, tmp_path):
    stream = TaskStream(digits, make_split(10, num_tasks=5, seed=3))
    record = save_manifest(stream, tmp_path / "split.json")
    assert record["tasks"][0]["train"]["count"] == len(stream.train(0))
    assert (
        save_manifest(TaskStream(digits, make_split(10, num_tasks=5, seed=3)), tmp_path / "again.json")[
            "sha256"
        ]
        == record["sha256"]
    )
    assert load_split(tmp_path / "split.json") == stream.split
    check_manifest(stream, tmp_path / "split.json")
    with pytest.raises(DataError, match="another order"):
        check_manifest(TaskStream(digits, make_split(10, num_tasks=5, seed=4)), tmp_path / "split.json")
    other_data = build_datasets(DataConfig(name="digits"), 1)
    with pytest.raises(DataError, match="per-task samples differ"):
        check_manifest(TaskStream(other_data, make_split(10, num_tasks=5, seed=3)), tmp_path / "split.json")


def test_class_outside_the_dataset_is_refused(digits):
    with pytest.raises(DataError, match="label 11 is not a class"):
        TaskStream(digits, TaskSplit((0, 11), (2,)))


# ------------------------------------------------------------------------------------------- on-disk layouts


def _write_renditions(root, classes: int, per_class: int) -> None:
    from PIL import Image

    for c in range(classes):
        folder = root / "imagenet-r" / f"n{c:08d}"
        folder.mkdir(parents=True)
        for i in range(per_class):
            Image.new("RGB", (8, 8), (20 * c, 10 * i, 0)).save(folder / f"{i}.jpg")


def test_imagenet_r_layout_splits_80_20_and_streams(tmp_path):
    _write_renditions(tmp_path, classes=4, per_class=5)
    splits = build_datasets(DataConfig(name="imagenet-r", path=str(tmp_path), image_size=8), 0)
    assert (len(splits.train), len(splits.val), len(splits.test)) == (16, 0, 4)
    assert splits.num_classes == 4 and splits.class_names[0] == "n00000000"
    stream = TaskStream(splits, make_split(4, num_tasks=2, seed=0))
    assert len(stream.train(0)) == len(stream.train(1)) == 8 and len(stream.test(1)) == 2


def test_imagenet_r_without_class_folders_names_the_layout(tmp_path):
    (tmp_path / "imagenet-r").mkdir()
    with pytest.raises(DataError, match=r"dataset 'imagenet-r': no images in <wnid>/ class folders") as info:
        build_datasets(DataConfig(name="imagenet-r", path=str(tmp_path)), 0)
    assert "\n" not in str(info.value) and "imagenet-r.tar" in str(info.value)
