"""`synthetic-images` and `synthetic-text`: small learnable datasets generated from the seed, for smoke tests."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..config import DataConfig
from .catalog import DATASETS, check_at_least
from .partition import random_split
from .splits import DatasetSplits
from .tensors import split_tensor_images
from .text import TokenBlocks


@DATASETS.register("synthetic-images")
def build_synthetic_images(
    cfg: DataConfig,
    seed: int,
    *,
    num_classes: int = 10,
    num_samples: int = 1000,
    image_size: int = 32,
    channels: int = 3,
    noise: float = 1.0,
    val_fraction: float = 0.1,
    test_fraction: float = 0.2,
) -> DatasetSplits:
    """Per-class smooth random prototype plus Gaussian noise of std `noise`: learnable and fast, in memory."""
    check_at_least(1, num_classes=num_classes, image_size=image_size, channels=channels)
    check_at_least(num_classes, num_samples=num_samples)
    check_at_least(0, noise=noise)
    generator = torch.Generator().manual_seed(seed)
    coarse = max(1, image_size // 4)
    prototypes = torch.randn(num_classes, channels, coarse, coarse, generator=generator)
    prototypes = F.interpolate(prototypes, size=(image_size, image_size), mode="bilinear")
    labels = torch.arange(num_samples) % num_classes
    shape = (num_samples, channels, image_size, image_size)
    images = prototypes[labels] + noise * torch.randn(shape, generator=generator)
    targets = labels.tolist()
    train, val, test = split_tensor_images(
        images, targets, val_fraction, test_fraction, seed, normalize=False
    )
    return DatasetSplits(
        train=train,
        val=val,
        test=test,
        task="classification",
        input_shape=(channels, image_size, image_size),
        num_classes=num_classes,
        class_names=[f"class_{c}" for c in range(num_classes)],
    )


@DATASETS.register("synthetic-text")
def build_synthetic_text(
    cfg: DataConfig,
    seed: int,
    *,
    vocab_size: int = 128,
    num_samples: int = 512,
    branching: int = 4,
    val_fraction: float = 0.1,
    test_fraction: float = 0.1,
) -> DatasetSplits:
    """Sequences of data.seq_len tokens walked on a seeded random Markov chain with `branching` successors per token."""
    check_at_least(2, vocab_size=vocab_size)
    check_at_least(1, num_samples=num_samples, branching=branching)
    generator = torch.Generator().manual_seed(seed)
    successors = torch.randint(vocab_size, (vocab_size, branching), generator=generator)
    weights = torch.rand(vocab_size, branching, generator=generator) + 0.05
    sequences = torch.empty(num_samples, cfg.seq_len, dtype=torch.long)
    sequences[:, 0] = torch.randint(vocab_size, (num_samples,), generator=generator)
    for t in range(1, cfg.seq_len):
        previous = sequences[:, t - 1]
        choice = torch.multinomial(weights[previous], 1, generator=generator).squeeze(1)
        sequences[:, t] = successors[previous, choice]
    train, val, test = (
        TokenBlocks(sequences[idx]) for idx in random_split(num_samples, val_fraction, test_fraction, seed)
    )
    return DatasetSplits(
        train=train, val=val, test=test, task="causal-lm", input_shape=(cfg.seq_len,), vocab_size=vocab_size
    )
