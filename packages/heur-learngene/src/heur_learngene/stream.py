"""The class-disjoint task stream of the collective model: a class order cut into consecutive tasks."""

from __future__ import annotations

from learngene_core.errors import ConfigError

from .config import StreamConfig


def task_classes(stream: StreamConfig) -> list[list[int]]:
    """The stream's tasks (lists of original labels); overlapping classes are refused."""
    seen: dict[int, int] = {}
    tasks = [
        stream.classes[i : i + stream.task_size] for i in range(0, len(stream.classes), stream.task_size)
    ]
    for t, task in enumerate(tasks):
        for label in task:
            if label in seen:
                raise ConfigError(
                    f"stream.classes: class {label} is in task {seen[label]} and task {t}; "
                    "the tasks of a stream must be class-disjoint"
                )
            seen[label] = t
    if not tasks:
        raise ConfigError("stream.classes is empty; list the class order of the stream")
    return tasks
