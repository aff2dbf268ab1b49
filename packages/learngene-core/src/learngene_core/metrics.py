"""Metrics as JSON lines (one record per line) and a PNG plot of the curves."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Any

from .errors import CheckpointError

METRICS_NAME = "metrics.jsonl"
PLOT_NAME = "metrics.png"


class MetricsLog:
    """Appends `{"step", "split", ...metrics}` records to `metrics.jsonl` and keeps them in memory."""

    def __init__(self, path: str | Path, enabled: bool = True) -> None:
        self.path = Path(path)
        self.enabled = enabled
        self.records: list[dict[str, Any]] = []

    def truncate_after(self, step: int) -> None:
        """Drop what a run logged after its checkpoint at `step` (used when resuming from it): records
        of later steps, and the final "test" record, which is logged after the last checkpoint's save.
        -1 keeps nothing (a run that restarts from step 0). A torn last line (a killed write) is dropped
        (`repair_jsonl`); the file is rewritten atomically, so a kill now cannot lose the records kept."""
        from .checkpoint import atomic_write_text  # imports torch, which a reader of metrics may not need

        records = []
        if step >= 0 and self.path.is_file():
            records = repair_jsonl(self.path) if self.enabled else read_metrics(self.path)
        self.records = [
            r
            for r in records
            if r.get("step", 0) < step or (r.get("step", 0) == step and r.get("split") != "test")
        ]
        if self.enabled and self.path.is_file():
            atomic_write_text(self.path, "".join(json.dumps(r) + "\n" for r in self.records))

    def log(self, step: int, split: str, **metrics: Any) -> dict[str, Any]:
        record = {"step": step, "split": split, **{k: _plain(v) for k, v in metrics.items()}}
        self.records.append(record)
        if self.enabled:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("a") as fh:
                fh.write(json.dumps(record) + "\n")
        return record


def _plain(value: Any) -> Any:
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value


def read_metrics(path: str | Path) -> list[dict[str, Any]]:
    """Read a metrics.jsonl (or any JSON-lines log) into a list of records (CheckpointError naming file:line if
    one is broken).

    A torn last line (no newline, not JSON: what a killed write leaves) is skipped with a warning line on stderr;
    the file is left as it is (`repair_jsonl` mends it, before a run appends to it again).
    """
    path = Path(path)
    records, data, whole = _read_jsonl(path)
    if whole < len(data):
        _warn_torn(path, data[whole:], "skipped")
    return records


def repair_jsonl(path: str | Path) -> list[dict[str, Any]]:
    """Mend an append-only JSON-lines log (metrics.jsonl, a stream of task records) after a `kill -9`, before
    appending to it again, and return its records.

    A last line without its newline that does not parse is the trace of a write cut short: it is cut from the
    file, with one warning line on stderr naming the file. A last line that parses only lacks its newline, which
    is added (so the next record starts a line of its own). A broken line anywhere else is real damage, not a
    killed write: a CheckpointError names file:line, and the file is left alone.
    """
    path = Path(path)
    records, data, whole = _read_jsonl(path)
    if whole < len(data):
        _warn_torn(path, data[whole:], "dropped")
        with path.open("r+b") as fh:
            fh.truncate(whole)
    elif data and not data.endswith(b"\n"):
        with path.open("ab") as fh:
            fh.write(b"\n")
    return records


def _read_jsonl(path: Path) -> tuple[list[dict[str, Any]], bytes, int]:
    """The records of a JSON-lines file, its bytes, and the length of its whole lines: all of it but a torn last
    line (no newline after it and not a JSON record)."""
    data = path.read_bytes()
    lines = data.split(b"\n")
    records: list[dict[str, Any]] = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        record = _json_record(line)
        if record is not None:
            records.append(record)
        elif number == len(lines):  # no newline after it: a write was cut short
            return records, data, len(data) - len(line)
        elif not _is_utf8(line):
            raise CheckpointError(f"{path} is not UTF-8 text (line {number}): not a JSON-lines log")
        else:
            raise CheckpointError(f"{path}:{number}: not a JSON record; fix or delete that line")
    return records, data, len(data)


def _json_record(line: bytes) -> dict[str, Any] | None:
    try:
        record = json.loads(line.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        return None
    return record if isinstance(record, dict) else None


def _is_utf8(line: bytes) -> bool:
    try:
        line.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _warn_torn(path: Path, torn: bytes, done: str) -> None:
    print(
        f"warning: {path}: {done} its torn last line (a write cut short by a kill): {torn[:30]!r}",
        file=sys.stderr,
    )


def plot_metrics(records: list[dict[str, Any]], path: str | Path, title: str = "") -> Path | None:
    """Plot loss (train and val) and accuracy (val) against step into a PNG; returns None when nothing to plot."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    series: dict[tuple[str, str], tuple[list, list]] = {}
    for r in records:
        for key in ("loss", "accuracy"):
            if isinstance(r.get(key), (int, float)) and r.get("split") in ("train", "val"):
                xs, ys = series.setdefault((key, r["split"]), ([], []))
                xs.append(r["step"])
                ys.append(r[key])
    if not series:
        return None
    keys = [k for k in ("loss", "accuracy") if any(m == k for m, _ in series)]
    fig, axes = plt.subplots(1, len(keys), figsize=(5 * len(keys), 3.5), squeeze=False)
    for ax, key in zip(axes[0], keys):
        for (metric, split), (xs, ys) in sorted(series.items()):
            if metric == key:
                ax.plot(xs, ys, label=split, marker="o" if split == "val" else None, markersize=3)
        ax.set_xlabel("step")
        ax.set_ylabel(key)
        ax.grid(alpha=0.3)
        ax.legend()
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
