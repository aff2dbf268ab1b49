"""Datasets for learngene: a registry of builders, the generic DataConfig options, and plain DataLoaders.

Every item is `(input, target)`: images give a normalised float (C, H, W) tensor and a long scalar label, text
gives a LongTensor (seq_len,) of token ids twice. Register a new dataset with
`@DATASETS.register("name")` on `fn(cfg: DataConfig, seed: int, *, option=default, ...) -> DatasetSplits`.
"""

from . import (  # noqa: F401  (register built-ins)
    cifar,
    digits,
    fgvc,
    image_folder,
    imagenet,
    imagenet_r,
    jsonl_text,
    synthetic,
    vtab,
)
from .build import build_datasets
from .catalog import DATASETS
from .loaders import build_dataloaders
from .splits import DatasetSplits

__all__ = ["DATASETS", "DatasetSplits", "build_dataloaders", "build_datasets"]
