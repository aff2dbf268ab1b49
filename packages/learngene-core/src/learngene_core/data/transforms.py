"""The per-item image adapter behind `data.image_size` and `data.channels`, applicable to any image dataset."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from ..errors import DataError


class ImageAdapter:
    """Resize a (C, H, W) float image to size x size (bilinear, antialiased) and convert 1->3 or N->1 channels."""

    def __init__(self, size: int | None, channels: int | None) -> None:
        self.size = size
        self.channels = channels

    def __call__(self, image: Tensor) -> Tensor:
        if self.size is not None and tuple(image.shape[-2:]) != (self.size, self.size):
            image = F.interpolate(image[None], size=(self.size, self.size), mode="bilinear", antialias=True)[
                0
            ]
        if self.channels is not None and image.shape[0] != self.channels:
            image = image.mean(0, keepdim=True) if self.channels == 1 else image.repeat(self.channels, 1, 1)
        return image

    def output_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        """The (C, H, W) this adapter produces from `shape`; DataError if the channels cannot be converted."""
        channels, height, width = shape
        if self.channels not in (None, 1, channels) and channels != 1:
            raise DataError(f"data.channels={self.channels} cannot be made from {channels}-channel images")
        return (self.channels or channels, self.size or height, self.size or width)
