"""Configs of the learngene pipeline: extraction (aux net distilled from an ancestry) and descendants."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..config import DataConfig, ExperimentConfig, ModelConfig, TrainConfig
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


@dataclass
class DescendantOptions:
    """How descendants are built from a learngene (the `descendant` section of a descendant config)."""

    # copy the aux net's head: null = when the data's label space is the learngene's (same dataset and classes)
    load_head: bool | None = None
    # per-depth layouts, e.g. {12: [0,0,0,1,1,1,2,2,3,3,4,4]}; depths not listed use the method's default
    layouts: dict[int, list[int]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # an override `descendant.layouts.12=[...]` arrives with a string key
        self.layouts = {
            int(k) if isinstance(k, str) and k.isdigit() else k: v for k, v in self.layouts.items()
        }
        for depth, layout in self.layouts.items():
            if not isinstance(depth, int) or isinstance(depth, bool) or depth < 1:
                raise ValueError(f"layouts keys are depths >= 1, got {depth!r}")
            if not isinstance(layout, list) or not all(isinstance(x, int) for x in layout):
                raise ValueError(f"layouts[{depth}] must be a list of integers, got {layout!r}")
            if len(layout) != depth:
                raise ValueError(f"layouts[{depth}] has {len(layout)} entries, not {depth}")


@dataclass
class DescendantConfig(ExperimentConfig):
    """What `<method> train` and `<method> compare` run: an experiment plus how descendants are built."""

    descendant: DescendantOptions = field(default_factory=DescendantOptions)
