"""`TaskStream`: per-task train/val/test views of any classification `DatasetSplits`, relabelled by a split."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from ..data.splits import DatasetSplits
from ..data.views import ClassView
from ..errors import DataError
from .split import TaskSplit

PARTS = ("train", "val", "test")


class TaskStream:
    """The tasks of `split` over `splits`: `train(t)`, `val(t)`, `test(t)` hold task t's classes only, and
    `test_seen(t)` the classes of tasks 0..t; every target is the class's position in the split's order."""

    def __init__(self, splits: DatasetSplits, split: TaskSplit) -> None:
        if splits.task != "classification" or splits.num_classes is None:
            raise DataError(f"continual tasks need a classification dataset, got {splits.task}")
        bad = [c for c in split.order if not 0 <= c < splits.num_classes]
        if bad:
            raise DataError(
                f"class order: label {bad[0]} is not a class of the dataset (labels 0..{splits.num_classes - 1})"
            )
        self.splits = splits
        self.split = split
        self._label_map = split.label_map()
        self._stream_targets = {part: self._relabel(getattr(splits, part).targets) for part in PARTS}

    @property
    def num_tasks(self) -> int:
        return self.split.num_tasks

    def indices(self, part: str, first_task: int, last_task: int) -> np.ndarray:
        """Sorted indices into `splits.<part>` of the samples of tasks first_task..last_task."""
        if part not in PARTS:
            raise DataError(f"unknown part '{part}'; use train, val or test")
        self.split._check_task(first_task)
        self.split._check_task(last_task)
        lo, hi = self.split.offsets[first_task], self.split.offsets[last_task + 1]
        targets = self._stream_targets[part]
        return np.flatnonzero((targets >= lo) & (targets < hi))

    def view(self, part: str, first_task: int, last_task: int) -> Dataset:
        """Samples of tasks first_task..last_task of one part, labelled by position in the class order."""
        return ClassView(
            getattr(self.splits, part), self.indices(part, first_task, last_task), self._label_map
        )

    def train(self, task: int) -> Dataset:
        return self.view("train", task, task)

    def val(self, task: int) -> Dataset:
        return self.view("val", task, task)

    def test(self, task: int) -> Dataset:
        return self.view("test", task, task)

    def train_seen(self, task: int) -> Dataset:
        """Training samples of tasks 0..task (the joint-training upper bound)."""
        return self.view("train", 0, task)

    def test_seen(self, task: int) -> Dataset:
        return self.view("test", 0, task)

    def _relabel(self, targets) -> np.ndarray:
        """Stream label of every sample, -1 for classes outside the split."""
        return np.asarray([self._label_map.get(int(t), -1) for t in targets], dtype=np.int64)


def accuracy_per_task(
    predict: Callable[[Tensor], Tensor], stream: TaskStream, last_task: int, batch_size: int = 256
) -> list[float]:
    """Accuracy of `predict(inputs) -> stream labels` on the test set of every task 0..last_task.

    Each sample is predicted on its own merits: batches mix nothing but the samples of one task, and `predict`
    receives no task id, so nothing can leak the task identity to the model.
    """
    accuracies = []
    for task in range(last_task + 1):
        correct = total = 0
        for inputs, targets in DataLoader(stream.test(task), batch_size=batch_size):
            with torch.no_grad():
                correct += int((predict(inputs) == targets).sum())
            total += len(targets)
        if total == 0:
            raise DataError(f"task {task} has no test samples")
        accuracies.append(correct / total)
    return accuracies
