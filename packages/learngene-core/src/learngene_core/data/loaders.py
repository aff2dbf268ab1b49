"""`build_dataloaders`: plain DataLoaders (shuffled, seeded train; ordered val/test) for accelerate to prepare."""

from __future__ import annotations

import torch
from torch.utils.data import DataLoader

from ..config import DataConfig
from ..errors import DataError
from .augment import train_collate, train_sampler
from .splits import DatasetSplits


def build_dataloaders(
    splits: DatasetSplits, cfg: DataConfig, seed: int
) -> tuple[DataLoader, DataLoader, DataLoader]:
    """Train/val/test loaders; only train is shuffled, by a generator seeded with `seed`, so runs repeat.

    The train loader also applies `cfg.augment`'s batch-level augmentations (see `augment.py`).
    """
    common = {"num_workers": cfg.num_workers, "pin_memory": False, "persistent_workers": cfg.num_workers > 0}
    generator = torch.Generator().manual_seed(seed)
    try:
        collate = train_collate(cfg.augment, splits.num_classes)
    except ValueError as exc:
        raise DataError(f"{exc}; '{cfg.name}' is {splits.task}") from None
    sampler = train_sampler(cfg.augment, splits.train)
    train = DataLoader(
        splits.train,
        batch_size=cfg.batch_size,
        shuffle=sampler is None,
        sampler=sampler,
        drop_last=cfg.augment.mixes,  # timm's Mixup needs even batches (DeiT drops the last one too)
        generator=generator,
        collate_fn=collate,
        **common,
    )
    eval_batch_size = cfg.eval_batch_size or cfg.batch_size
    val = DataLoader(splits.val, batch_size=eval_batch_size, shuffle=False, drop_last=False, **common)
    test = DataLoader(splits.test, batch_size=eval_batch_size, shuffle=False, drop_last=False, **common)
    return train, val, test
