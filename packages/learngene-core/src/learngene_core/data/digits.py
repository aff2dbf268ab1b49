"""`digits`: scikit-learn's bundled 8x8 handwritten digits (1797 images, 10 classes), split by seed, in memory."""

from __future__ import annotations

import torch

from ..config import DataConfig
from .catalog import DATASETS
from .splits import DatasetSplits
from .tensors import split_tensor_images


@DATASETS.register("digits")
def build_digits(
    cfg: DataConfig, seed: int, *, val_fraction: float = 0.1, test_fraction: float = 0.3
) -> DatasetSplits:
    """Real 1x8x8 digits shipped with scikit-learn (no download), stratified split by seed, train-normalised."""
    from sklearn.datasets import load_digits  # imported here: scikit-learn is slow to import

    bunch = load_digits()
    images = torch.tensor(bunch.images, dtype=torch.float32).unsqueeze(1) / 16.0
    targets = bunch.target.tolist()
    train, val, test = split_tensor_images(images, targets, val_fraction, test_fraction, seed, normalize=True)
    return DatasetSplits(
        train=train,
        val=val,
        test=test,
        task="classification",
        input_shape=(1, 8, 8),
        num_classes=10,
        class_names=[str(d) for d in range(10)],
    )
