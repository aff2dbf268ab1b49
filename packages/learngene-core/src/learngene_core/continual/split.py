"""`TaskSplit`: a class order cut into class-disjoint tasks, validated, with the label maps methods need.

Labels inside a stream are positions in the class order, so task t owns the contiguous range
`offsets[t] .. offsets[t + 1] - 1` (the PyCIL / HiDe convention) and "classes seen after task t" is a prefix.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import DataError


@dataclass(frozen=True)
class TaskSplit:
    """Original dataset labels in learning order, cut into tasks of `task_sizes` classes."""

    order: tuple[int, ...]
    task_sizes: tuple[int, ...]
    seed: int | None = None  # the seed that shuffled the order (None: given by hand or unshuffled)

    def __post_init__(self) -> None:
        object.__setattr__(self, "order", tuple(int(c) for c in self.order))
        object.__setattr__(self, "task_sizes", tuple(int(n) for n in self.task_sizes))
        _check_no_repeats(self.order)
        if not self.task_sizes or any(n < 1 for n in self.task_sizes):
            raise DataError(f"task sizes must be positive class counts, got {list(self.task_sizes)}")
        if sum(self.task_sizes) != len(self.order):
            raise DataError(
                f"task sizes {list(self.task_sizes)} sum to {sum(self.task_sizes)} classes, "
                f"but the class order has {len(self.order)}"
            )

    @classmethod
    def from_tasks(cls, tasks: Sequence[Sequence[int]], seed: int | None = None) -> TaskSplit:
        """A split from explicit per-task class lists; a class in two tasks is an error naming both."""
        owner: dict[int, int] = {}
        for t, classes in enumerate(tasks):
            for c in classes:
                if int(c) in owner and owner[int(c)] != t:
                    raise DataError(f"tasks overlap: class {c} is in task {owner[int(c)]} and task {t}")
                owner.setdefault(int(c), t)
        return cls(tuple(c for classes in tasks for c in classes), tuple(len(t) for t in tasks), seed)

    @property
    def num_tasks(self) -> int:
        return len(self.task_sizes)

    @property
    def num_classes(self) -> int:
        return len(self.order)

    @property
    def offsets(self) -> tuple[int, ...]:
        """Start label of every task plus the total: task t owns labels offsets[t]..offsets[t+1]-1."""
        return tuple(int(x) for x in np.concatenate([[0], np.cumsum(self.task_sizes)]))

    def tasks(self) -> list[tuple[int, ...]]:
        """Original labels of each task."""
        o = self.offsets
        return [self.order[o[t] : o[t + 1]] for t in range(self.num_tasks)]

    def label_map(self) -> dict[int, int]:
        """Original label -> stream label (its position in the order)."""
        return {c: i for i, c in enumerate(self.order)}

    def seen_classes(self, task: int) -> int:
        """Number of stream labels seen after learning tasks 0..task."""
        self._check_task(task)
        return self.offsets[task + 1]

    def task_of(self, label: int) -> int:
        """The task that owns stream label `label`."""
        if not 0 <= label < self.num_classes:
            raise DataError(f"label {label} is outside the split's labels 0..{self.num_classes - 1}")
        return bisect.bisect_right(self.offsets, label) - 1

    def task_of_labels(self) -> np.ndarray:
        """Array mapping every stream label to its task."""
        return np.repeat(np.arange(self.num_tasks), self.task_sizes)

    def to_dict(self) -> dict[str, Any]:
        return {"order": list(self.order), "task_sizes": list(self.task_sizes), "seed": self.seed}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TaskSplit:
        try:
            return cls(tuple(data["order"]), tuple(data["task_sizes"]), data.get("seed"))
        except (KeyError, TypeError, ValueError) as exc:
            raise DataError(f"not a task split record ({type(exc).__name__}: {exc})") from None

    def _check_task(self, task: int) -> None:
        if not 0 <= task < self.num_tasks:
            raise DataError(f"task {task} does not exist; the split has tasks 0..{self.num_tasks - 1}")


def make_split(
    num_classes: int,
    *,
    num_tasks: int | None = None,
    task_size: int | None = None,
    first_task_size: int | None = None,
    seed: int | None = None,
    order: Sequence[int] | None = None,
) -> TaskSplit:
    """Shuffle labels 0..num_classes-1 with `seed` (or take `order`) and cut them into tasks.

    Give `num_tasks` (equal tasks; must divide the class count) or `task_size` (PyCIL style: an optional
    `first_task_size`, then tasks of `task_size`, and a smaller last task for the remainder, e.g. Cars-196 with
    task_size=20 gives 9 x 20 + 16).
    """
    if order is not None:
        order = [int(c) for c in order]
        _check_no_repeats(order)
        bad = [c for c in order if not 0 <= c < num_classes]
        if bad:
            raise DataError(
                f"class order: label {bad[0]} is not a class of the dataset (labels 0..{num_classes - 1})"
            )
    elif seed is None:
        order = list(range(num_classes))
    else:
        order = np.random.default_rng(seed).permutation(num_classes).tolist()
    return TaskSplit(tuple(order), _task_sizes(len(order), num_tasks, task_size, first_task_size), seed)


def _task_sizes(n: int, num_tasks: int | None, task_size: int | None, first: int | None) -> tuple[int, ...]:
    if (num_tasks is None) == (task_size is None):
        raise DataError("give exactly one of num_tasks and task_size")
    if num_tasks is not None:
        if num_tasks < 1 or n % num_tasks:
            raise DataError(
                f"{n} classes do not split into {num_tasks} equal tasks; choose a divisor or set task_size"
            )
        return (n // num_tasks,) * num_tasks
    assert task_size is not None
    if task_size < 1 or (first is not None and not 0 < first <= n):
        raise DataError(f"task_size must be >= 1 and first_task_size in 1..{n}; got {task_size}, {first}")
    sizes = [first] if first is not None else []
    left = n - sum(sizes)
    sizes += [task_size] * (left // task_size) + ([left % task_size] if left % task_size else [])
    return tuple(sizes)


def _check_no_repeats(order: Sequence[int]) -> None:
    seen: dict[int, int] = {}
    for position, c in enumerate(order):
        if c in seen:
            raise DataError(f"class order repeats class {c} (positions {seen[c]} and {position})")
        seen[c] = position
