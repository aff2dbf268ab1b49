"""Metrics as JSON lines (one record per line) and a PNG plot of the curves."""

from __future__ import annotations

import json
import math
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
        -1 keeps nothing (a run that restarts from step 0)."""
        if not self.path.is_file():
            self.records = []
            return
        self.records = [
            r
            for r in read_metrics(self.path)
            if r.get("step", 0) < step or (r.get("step", 0) == step and r.get("split") != "test")
        ]
        if self.enabled:
            self.path.write_text("".join(json.dumps(r) + "\n" for r in self.records))

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
    """Read a metrics.jsonl (or any JSON-lines log) into a list of records (CheckpointError naming the line if
    one is broken).

    A last line without its newline is what a killed write leaves behind: it is dropped, not an error.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise CheckpointError(f"{path} is not UTF-8 text: not a JSON-lines log") from None
    lines = text.split("\n")
    if lines and lines[-1].strip():  # unterminated: a write was cut short
        lines = lines[:-1]
    records = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            record = None
        if not isinstance(record, dict):
            raise CheckpointError(f"{path}:{number}: not a JSON record; fix or delete that line")
        records.append(record)
    return records


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
