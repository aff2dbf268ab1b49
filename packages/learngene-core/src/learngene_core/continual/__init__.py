"""Class-incremental continual learning: a seeded class order split into class-disjoint tasks, per-task views of
any registered dataset, a manifest with hashes so runs are reproducible, and the accuracy-matrix metrics.

    split = make_split(num_classes=10, task_size=2, seed=1993)
    stream = TaskStream(build_datasets(cfg.data, seed), split)
    stream.train(0), stream.test_seen(2)            # labels are positions in the class order
    matrix = AccuracyMatrix(split.num_tasks); matrix.record(0, [0.97]); matrix.summary()
"""

from .manifest import check_manifest, load_split, manifest, save_manifest
from .metrics import (
    AccuracyMatrix,
    backward_transfer,
    cumulative_average_accuracy,
    final_average_accuracy,
    final_forgetting,
    task_identity_accuracy,
    task_recall_at_k,
)
from .split import TaskSplit, make_split
from .stream import TaskStream, accuracy_per_task

__all__ = [
    "AccuracyMatrix",
    "TaskSplit",
    "TaskStream",
    "accuracy_per_task",
    "backward_transfer",
    "check_manifest",
    "cumulative_average_accuracy",
    "final_average_accuracy",
    "final_forgetting",
    "load_split",
    "make_split",
    "manifest",
    "save_manifest",
    "task_identity_accuracy",
    "task_recall_at_k",
]
