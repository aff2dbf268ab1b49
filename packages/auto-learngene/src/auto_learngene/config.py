"""The `condense` config. Auto-Learngene has no public code: every choice the paper leaves open is a key here,
with the default this package uses (the meta-network follows "Learning What and Where to Transfer", L2T-ww).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from learngene_core.config import DataConfig, TrainConfig
from learngene_core.learngene.config import AncestryConfig


@dataclass
class AutoSpec:
    """The meta-network, its meta-gradient training and how its weights pick the learngene."""

    k: int = 2  # learngene size: the k ancestry layers with the largest aggregated transfer weight
    # which (ancestry layer m, descendant layer n) pairs get a transfer term: every pair within
    # max_layer_distance of each other (null: all pairs, as in L2T-ww's "all-to-all" setting)
    max_layer_distance: int | None = None
    transfer_weight: float = 0.5  # beta: pseudo-descendant loss = CE + beta * weighted feature matching
    feature_norm: Literal["rms", "none"] = (
        "rms"  # rms: features scaled to unit RMS per sample before matching
    )
    weight_activation: Literal["softplus", "relu"] = "softplus"  # keeps lambda_{m,n} >= 0
    inner_steps: int = 2  # T: inner SGD steps on the weighted matching loss (then one on CE) per meta step
    inner_lr: float = 0.1  # step size of the inner steps
    meta_lr: float = 1e-3  # Adam learning rate of the meta-network
    meta_every: int = 1  # a meta step every this many training steps
    aggregate: Literal["sum", "max"] = "sum"  # lambda_m = sum (or max) over n of mean_x lambda_{m,n}(x)
    score_batches: int = 8  # training batches averaged when the weights are read out at the end

    def __post_init__(self) -> None:
        if self.k < 1:
            raise ValueError(f"k must be >= 1, got {self.k}")
        if self.max_layer_distance is not None and self.max_layer_distance < 0:
            raise ValueError(f"max_layer_distance must be >= 0 or null, got {self.max_layer_distance}")
        for name in ("inner_steps", "meta_every", "score_batches"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("inner_lr", "meta_lr"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")
        if self.transfer_weight < 0:
            raise ValueError(f"transfer_weight must be >= 0, got {self.transfer_weight}")


@dataclass
class CondenseConfig:
    """What `auto-learngene condense` runs: a pseudo-descendant trained on `data` with meta-learned transfer."""

    ancestry: AncestryConfig = field(
        default_factory=AncestryConfig
    )  # a trained run (e.g. a heur collective task)
    data: DataConfig = field(default_factory=DataConfig)  # the pseudo-descendant's task
    train: TrainConfig = field(default_factory=TrainConfig)
    method: AutoSpec = field(default_factory=AutoSpec)
    seed: int = 0
