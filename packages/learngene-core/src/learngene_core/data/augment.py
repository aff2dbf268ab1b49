"""DeiT's batch-level training augmentations, all timm's own: random erasing, Mixup/CutMix, repeated augmentation.

`build_dataloaders` uses `train_sampler` and `train_collate` for the training loader only; RandAugment runs per
image inside the file datasets' timm transform (`image_files.image_file_splits`).
"""

from __future__ import annotations

from typing import Any

import torch
from torch.utils.data import Dataset, Sampler
from torch.utils.data.dataloader import default_collate

from ..config import AugmentConfig


class BatchAugment:
    """A collate function: stack the batch, erase random patches, then mix images and one-hot targets."""

    def __init__(self, cfg: AugmentConfig, num_classes: int) -> None:
        from timm.data import Mixup
        from timm.data.random_erasing import RandomErasing

        self.erase = (
            RandomErasing(cfg.re_prob, mode=cfg.re_mode, max_count=cfg.re_count, device="cpu")
            if cfg.re_prob > 0
            else None
        )
        self.mix = (
            Mixup(
                mixup_alpha=cfg.mixup,
                cutmix_alpha=cfg.cutmix,
                prob=cfg.mixup_prob,
                switch_prob=cfg.mixup_switch_prob,
                label_smoothing=0.0,  # train.label_smoothing is applied by the loss, to the mixed targets
                num_classes=num_classes,
            )
            if cfg.mixes
            else None
        )

    def __call__(self, batch: list[Any]) -> tuple[torch.Tensor, torch.Tensor]:
        images, targets = default_collate(batch)
        if self.erase is not None:
            images = self.erase(images)
        if self.mix is not None:
            images, targets = self.mix(images, targets)
        return images, targets


def train_collate(cfg: AugmentConfig, num_classes: int | None) -> BatchAugment | None:
    """The training collate function, or None when no batch-level augmentation is on."""
    if cfg.re_prob == 0 and not cfg.mixes:
        return None
    if num_classes is None:
        raise ValueError("data.augment.re_prob/mixup/cutmix apply to image classification only")
    return BatchAugment(cfg, num_classes)


def train_sampler(cfg: AugmentConfig, dataset: Dataset) -> Sampler | None:
    """timm's RepeatAugSampler when `repeats` > 1, else None (the loader shuffles by the run's seed).

    Each epoch draws len(dataset) items (rounded down to 256 when larger): a shuffled 1/repeats of the images, each `repeats` times in a row. timm
    orders them by the epoch number alone, and as a single-process sampler (under accelerate, processes get
    whole batches, so the copies of an image share a batch rather than going to different GPUs as in DeiT).
    """
    if cfg.repeats == 1:
        return None
    from timm.data.distributed_sampler import RepeatAugSampler

    return RepeatAugSampler(dataset, num_replicas=1, rank=0, shuffle=True, num_repeats=cfg.repeats)
