"""The on-disk record of a split: class order, tasks and a hash of every task's sample indices per part.

Two runs with the same manifest hash trained and tested on exactly the same samples in the same order.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np

from ..checkpoint import atomic_write_text, read_json_file
from ..errors import DataError
from .split import TaskSplit
from .stream import PARTS, TaskStream

MANIFEST_NAME = "split.json"


def _sha256(data: Any) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()


def manifest(stream: TaskStream) -> dict[str, Any]:
    """The split, the dataset description, per-task class lists and per-part index hashes, and one overall hash."""
    split = stream.split
    tasks = []
    for t, classes in enumerate(split.tasks()):
        entry: dict[str, Any] = {"task": t, "classes": list(classes)}
        for part in PARTS:
            idx = stream.indices(part, t, t)
            entry[part] = {
                "count": len(idx),
                "sha256": hashlib.sha256(np.asarray(idx, np.int64).tobytes()).hexdigest(),
            }
        tasks.append(entry)
    body = {"dataset": stream.splits.description, **split.to_dict(), "tasks": tasks}
    return {**body, "sha256": _sha256(body)}


def save_manifest(stream: TaskStream, path: str | Path) -> dict[str, Any]:
    """Write the manifest as JSON (atomically) and return it."""
    record = manifest(stream)
    atomic_write_text(Path(path), json.dumps(record, indent=1) + "\n")
    return record


def load_split(path: str | Path) -> TaskSplit:
    """The TaskSplit stored in a manifest file (its order and task sizes are re-validated)."""
    return TaskSplit.from_dict(_read(Path(path)))


def check_manifest(stream: TaskStream, path: str | Path) -> None:
    """Fail with one line if `stream` differs from the manifest saved at `path` (other order, tasks or samples)."""
    saved = _read(Path(path))
    now = manifest(stream)
    if saved.get("sha256") == now["sha256"]:
        return
    for key in ("order", "task_sizes", "dataset"):
        if saved.get(key) != now[key]:
            raise DataError(
                f"{path}: the run was made with another {key.replace('_', ' ')} ({saved.get(key)!r}, now {now[key]!r})"
            )
    raise DataError(
        f"{path}: the run's per-task samples differ from this data (hash {saved.get('sha256')} vs {now['sha256']})"
    )


def _read(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise DataError(f"split manifest {path} not found")
    return read_json_file(path, DataError)
