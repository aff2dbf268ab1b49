"""Configs of the learngene pipeline: extraction (aux net distilled from an ancestry) and descendants."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..config import DataConfig, ModelConfig, TrainConfig
from ..distill import DistillConfig


@dataclass
class AncestryConfig:
    """The trained model a learngene is extracted from: a `learngene train` run, or a model + weights file."""

    run: str | None = None  # run directory of `learngene train` (reads its config.yaml and final/ weights)
    checkpoint: str = "final"  # final, best, or checkpoints/last of that run
    model: ModelConfig | None = None  # instead of `run`: any timm model, with model.checkpoint = weights file


@dataclass
class ExtractConfig:
    """What `<method> extract` runs: train the aux net by distillation from the ancestry, keep the learngene."""

    ancestry: AncestryConfig = field(default_factory=AncestryConfig)
    # The aux net: a timm ViT (any width, heads, patch, image size); its depth comes from `method`.
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)  # the data the ancestry is distilled on
    train: TrainConfig = field(default_factory=TrainConfig)
    distill: DistillConfig = field(default_factory=DistillConfig)
    method: dict[str, Any] = field(default_factory=dict)  # method settings (e.g. aux_depth, stages)
    seed: int = 0
