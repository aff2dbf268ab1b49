"""Backbones for SNELL: core's pre-trained backbone loader, with `package:NAME` read from snell/assets/."""

from __future__ import annotations

from pathlib import Path

from torch import nn

from learngene_core import pretrained
from learngene_core.config import ModelConfig


def resolve_checkpoint(path: str) -> Path:
    """A filesystem path for `path`, resolving `package:NAME` to the file shipped in snell/assets/."""
    return pretrained.resolve_checkpoint(path, "snell")


def build_backbone(
    cfg: ModelConfig, *, num_classes: int, input_shape: tuple[int, ...], seed: int
) -> nn.Module:
    """The timm model of `cfg` for this data, with `cfg.checkpoint`'s weights (all but the classifier)."""
    return pretrained.build_backbone(
        cfg, num_classes=num_classes, input_shape=input_shape, seed=seed, package="snell"
    )
