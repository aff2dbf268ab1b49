"""In-memory image datasets: a stack of image tensors with integer labels, plus per-channel statistics."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor
from torch.utils.data import Dataset

from .partition import stratified_split


class TensorImages(Dataset):
    """Images (N, C, H, W) held in memory; `transform` turns one stored image into the model input."""

    def __init__(
        self, images: Tensor, targets: Sequence[int], transform: Callable[[Tensor], Tensor] | None = None
    ) -> None:
        if len(images) != len(targets):
            raise ValueError(f"{len(images)} images but {len(targets)} targets")
        self.images = images
        self.targets = [int(t) for t in targets]
        self.transform = transform
        self._labels = torch.tensor(self.targets, dtype=torch.long)

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        image = self.images[index]
        if self.transform is not None:
            image = self.transform(image)
        return image, self._labels[index]


def split_tensor_images(
    images: Tensor,
    targets: Sequence[int],
    val_fraction: float,
    test_fraction: float,
    seed: int,
    normalize: bool,
) -> tuple[TensorImages, TensorImages, TensorImages]:
    """Stratified train/val/test TensorImages by seed; `normalize` standardises with the train split's statistics."""
    parts = stratified_split(targets, val_fraction, test_fraction, seed)
    if normalize:
        mean, std = channel_mean_std(images[parts[0]])
        images = (images - mean.view(1, -1, 1, 1)) / std.view(1, -1, 1, 1)
    train, val, test = (TensorImages(images[idx], [targets[i] for i in idx]) for idx in parts)
    return train, val, test


def channel_mean_std(images: Tensor, chunk: int = 1024) -> tuple[Tensor, Tensor]:
    """Per-channel mean and std of (N, C, H, W) images, summed in chunks so large uint8 stacks are never copied."""
    channels = images.shape[1]
    total = torch.zeros(channels, dtype=torch.float64)
    squares = torch.zeros(channels, dtype=torch.float64)
    for part in images.split(chunk):
        flat = part.double().transpose(0, 1).reshape(channels, -1)
        total += flat.sum(1)
        squares += flat.square().sum(1)
    count = images.numel() / channels
    mean = total / count
    std = (squares / count - mean.square()).clamp_min(1e-12).sqrt()
    return mean.float(), std.float()
