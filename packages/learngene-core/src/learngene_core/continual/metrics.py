"""The accuracy matrix of a continual run and its metrics (FAA, CAA, FFM, BWT, task-identity accuracy).

`matrix[i, j]` is the accuracy on task i's test set after learning task j (NaN for i > j). Accuracies are
fractions in [0, 1]; the printed line shows percent.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..checkpoint import atomic_write_text
from ..errors import DataError


def final_average_accuracy(matrix: np.ndarray) -> float:
    """FAA: mean accuracy over all tasks after the last one, (1/T) sum_i a[i, T]."""
    return float(np.mean(matrix[:, -1]))


def cumulative_average_accuracy(matrix: np.ndarray) -> float:
    """CAA: mean over steps j of the average accuracy on the tasks seen at j, (1/T) sum_j (1/j) sum_{i<=j} a[i, j]."""
    return float(np.mean([np.mean(matrix[: j + 1, j]) for j in range(matrix.shape[1])]))


def final_forgetting(matrix: np.ndarray) -> float:
    """FFM: mean over tasks i < T of the drop from the best earlier accuracy max_{i<=j<T} a[i, j] to a[i, T]."""
    last = matrix.shape[1] - 1
    if last == 0:
        return 0.0
    return float(np.mean([np.max(matrix[i, i:last]) - matrix[i, last] for i in range(last)]))


def backward_transfer(matrix: np.ndarray) -> float:
    """BWT: mean over tasks i < T of a[i, T] - a[i, i] (negative means forgetting)."""
    last = matrix.shape[1] - 1
    if last == 0:
        return 0.0
    return float(np.mean([matrix[i, last] - matrix[i, i] for i in range(last)]))


def task_identity_accuracy(predicted_tasks: torch.Tensor, true_tasks: torch.Tensor) -> float:
    """Fraction of samples whose predicted task is their true task."""
    return float((predicted_tasks == true_tasks).float().mean())


def task_recall_at_k(task_scores: torch.Tensor, true_tasks: torch.Tensor, k: int) -> float:
    """Fraction of samples whose true task is among the k highest-scoring tasks."""
    top = task_scores.topk(min(k, task_scores.shape[1]), dim=1).indices
    return float((top == true_tasks.unsqueeze(1)).any(1).float().mean())


class AccuracyMatrix:
    """Accuracies recorded after each task, with the metrics of the tasks learnt so far."""

    def __init__(self, num_tasks: int) -> None:
        self.values = np.full((num_tasks, num_tasks), np.nan)
        self.task_identity: dict[int, float] = {}

    @property
    def num_tasks(self) -> int:
        return self.values.shape[0]

    def record(self, task: int, accuracies: list[float], task_identity: float | None = None) -> None:
        """Store the accuracies on tasks 0..task measured right after learning `task`."""
        if not 0 <= task < self.num_tasks or len(accuracies) != task + 1:
            raise DataError(f"after task {task} record {task + 1} accuracies, got {len(accuracies)}")
        self.values[: task + 1, task] = accuracies
        if task_identity is not None:
            self.task_identity[task] = float(task_identity)

    def learnt(self) -> int:
        """Number of tasks with recorded accuracies."""
        return int((~np.isnan(self.values[0])).sum())

    def summary(self, upto: int | None = None) -> dict[str, float]:
        """FAA, CAA, FFM, BWT (fractions) over tasks 0..upto (default: the last recorded)."""
        upto = self.learnt() - 1 if upto is None else upto
        if upto < 0:
            raise DataError("no task has been evaluated yet")
        m = self.values[: upto + 1, : upto + 1]
        out = {
            "faa": final_average_accuracy(m),
            "caa": cumulative_average_accuracy(m),
            "ffm": final_forgetting(m),
            "bwt": backward_transfer(m),
        }
        if upto in self.task_identity:
            out["task_identity"] = self.task_identity[upto]
        return out

    def line(self, task: int) -> str:
        """One printable line after learning `task`: per-task accuracies and the running metrics, in percent."""
        accs = " ".join(f"{100 * a:.1f}" for a in self.values[: task + 1, task])
        metrics = " ".join(f"{k.upper()} {100 * v:.2f}" for k, v in self.summary(task).items())
        return f"after task {task}: acc [{accs}]  {metrics}"

    def to_dict(self) -> dict[str, Any]:
        rows = [[None if np.isnan(v) else float(v) for v in row] for row in self.values]
        identity = {str(k): v for k, v in self.task_identity.items()}
        return {
            "matrix": rows,
            "task_identity_after_task": identity,
            "summary": self.summary() if self.learnt() else {},
        }

    def save_json(self, path: str | Path) -> None:
        atomic_write_text(Path(path), json.dumps(self.to_dict(), indent=1) + "\n")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AccuracyMatrix:
        rows = data["matrix"]
        matrix = cls(len(rows))
        matrix.values = np.asarray([[np.nan if v is None else v for v in row] for row in rows], dtype=float)
        matrix.task_identity = {int(k): float(v) for k, v in data.get("task_identity_after_task", {}).items()}
        return matrix

    def plot(self, path: str | Path, title: str = "") -> Path:
        """Heat map of the matrix (rows: evaluated task, columns: after learning task) as a PNG."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        n = self.num_tasks
        fig, ax = plt.subplots(figsize=(1.0 + 0.6 * n, 0.8 + 0.6 * n))
        image = ax.imshow(100 * self.values, vmin=0, vmax=100, cmap="viridis")
        for i in range(n):
            for j in range(n):
                if not np.isnan(self.values[i, j]):
                    ax.text(
                        j,
                        i,
                        f"{100 * self.values[i, j]:.0f}",
                        ha="center",
                        va="center",
                        fontsize=7,
                        color="w",
                    )
        ax.set_xlabel("after learning task")
        ax.set_ylabel("accuracy on task")
        ax.set_xticks(range(n))
        ax.set_yticks(range(n))
        fig.colorbar(image, ax=ax, label="accuracy (%)")
        if title:
            ax.set_title(title, fontsize=9)
        fig.tight_layout()
        path = Path(path)
        fig.savefig(path, dpi=100)
        plt.close(fig)
        return path
