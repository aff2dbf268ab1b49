"""The `collective` config: a model trained on a stream of class-disjoint tasks, and how the learngene is chosen."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from learngene_core.config import DataConfig, ModelConfig, TrainConfig


@dataclass
class StreamConfig:
    """The open-world task stream: `classes` in order, cut into consecutive tasks of `task_size` classes."""

    classes: list[int] = field(default_factory=lambda: list(range(6)))
    task_size: int = 2
    samples_per_class: int | None = None  # cap training samples per class of each task (None: all)

    def __post_init__(self) -> None:
        if self.task_size < 1:
            raise ValueError(f"task_size must be >= 1, got {self.task_size}")


@dataclass
class HeurSpec:
    """How the collective model grows and how the learngene layers are picked."""

    widen: bool = True  # widen one layer per new task (task t widens layer t-1), Net2Wider-style
    widen_factor: float = 1.5  # new width = floor(widen_factor * old width) (the reference's 1.5)
    widen_noise: float = 1e-3  # std of the noise on the new units' weights (the reference's 1e-3)
    reset_head: bool = True  # a fresh classifier head for every task (labels restart at 0 per task)
    # gradient: RMS of the layer's gradient (||grad||_F / sqrt(#params)), averaged over a task's steps (the spec's
    # reading of the paper's "gradient information"); update: ||theta_end - theta_start|| / ||theta_start|| per task
    criterion: Literal["update", "gradient"] = "gradient"
    late_fraction: float = (
        0.5  # score = mean of the criterion over the last ceil(late_fraction * tasks) tasks
    )
    k: int = 2  # learngene size: the k layers with the smallest late-stream score

    def __post_init__(self) -> None:
        if not 0.0 < self.late_fraction <= 1.0:
            raise ValueError(f"late_fraction must be in (0, 1], got {self.late_fraction}")
        if self.widen_factor < 1.0:
            raise ValueError(f"widen_factor must be >= 1, got {self.widen_factor}")
        if self.widen_noise < 0:
            raise ValueError(f"widen_noise must be >= 0, got {self.widen_noise}")
        if self.k < 1:
            raise ValueError(f"k must be >= 1, got {self.k}")


@dataclass
class CollectiveConfig:
    """What `heur-learngene collective` runs."""

    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)  # the dataset the stream's tasks are cut from
    stream: StreamConfig = field(default_factory=StreamConfig)
    train: TrainConfig = field(default_factory=TrainConfig)  # per task
    method: HeurSpec = field(default_factory=HeurSpec)
    seed: int = 0
