"""Configs of the three stages: distil an auxiliary model, build (and train) the pool, fine-tune a descendant."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from learngene_core.config import DataConfig, ModelConfig, TrainConfig
from learngene_core.distill import DistillConfig
from learngene_core.learngene import AncestryConfig


def pool_distill_defaults() -> DistillConfig:
    """The paper's loss: 0.1 CE + 0.9 (soft CE + block MSE + attention MSE through teacher->student projections)."""
    return DistillConfig(
        alpha=0.9,
        temperature=1.0,
        soft_loss="soft-ce",
        feature_weight=0.9,
        project="teacher",
        feature_reduce="sum",
    )


@dataclass
class AuxConfig:
    """What `learngene-pool distill` runs: one auxiliary ViT distilled from the frozen ancestry."""

    ancestry: AncestryConfig = field(default_factory=AncestryConfig)
    # The student: timm kwargs of a ViT (embed_dim, depth, num_heads, mlp_ratio, ...); patch size, image size,
    # channels, class token and pooling default to the ancestry's so features match token for token.
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    # distill.alpha weights the soft term (the paper's alpha = 0.1 on CE is alpha 0.9 here); feature_pairs are
    # filled from `positions` when empty.
    distill: DistillConfig = field(default_factory=pool_distill_defaults)
    positions: Literal["[front,end]", "[mid,end]", "[end]"] = "[front,end]"  # matched blocks (loss_pos)
    match_attention: bool = True  # also match the attention-branch outputs (L_att)
    seed: int = 0


@dataclass
class BuildConfig:
    """What `learngene-pool build` runs: order the instances, add stitch layers, train with one config per step."""

    aux: list[str] = field(default_factory=list)  # auxiliary model directories written by `distill`
    stitch_init: Literal["ours", "lstsq"] = "ours"  # learned distillation projections, or least squares
    lstsq_samples: int = 100  # training images whose features fit the least-squares stitches
    nearest_stitching: bool = False  # stitch neighbouring widths only
    train_ids: list[int] | None = None  # configs sampled in training (None: all of them)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    distill: DistillConfig | None = None  # soft distillation from the ancestry while training (null: CE only)
    seed: int = 0

    def __post_init__(self) -> None:
        if self.lstsq_samples < 1:
            raise ValueError(f"lstsq_samples must be >= 1, got {self.lstsq_samples}")
