"""Backbones for SNELL: core's pre-trained backbone loader, with `package:NAME` read from snell/assets/.

The backbone stays frozen, so its position embeddings are never tuned: a data.image_size whose patch grid differs
from the checkpoint's pre-training grid is refused in one line naming both sizes (as in l2c), not resampled.
"""

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
    """The timm model of `cfg` for this data, with `cfg.checkpoint`'s weights (all but the classifier); position
    embeddings pre-trained on another image size are refused, not resampled."""
    return pretrained.build_backbone(
        cfg,
        num_classes=num_classes,
        input_shape=input_shape,
        seed=seed,
        package="snell",
        resize_position_embeddings=False,
    )
