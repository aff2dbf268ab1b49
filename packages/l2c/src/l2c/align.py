"""Classifier alignment: retrain a head on Gaussian pseudo-features of every seen class (HiDe-LoRA TAP, SLCA CA).

The backbone and adapters are untouched; only the head learns to compare classes of different tasks, which
current-task training (each task's logits trained in isolation) never taught it.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .config import AlignConfig
from .statistics import ClassStatistics, sample_features


def align_head(head: nn.Linear, stats: ClassStatistics, seen: int, cfg: AlignConfig, seed: int) -> float:
    """SGD (momentum 0.9, wd 5e-4, cosine) on fresh pseudo-features each epoch, CE over the `seen` classes;
    returns the last epoch's mean loss."""
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.SGD(head.parameters(), lr=cfg.lr, momentum=0.9, weight_decay=5e-4)
    x, _ = sample_features(stats, cfg.samples_per_centroid, cfg.variance_floor, generator)
    steps_per_epoch = math.ceil(len(x) / cfg.batch_size)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, cfg.epochs * steps_per_epoch)
    loss_sum = 0.0
    for _ in range(cfg.epochs):
        x, y = sample_features(stats, cfg.samples_per_centroid, cfg.variance_floor, generator)
        loss_sum = 0.0
        for xb, yb in zip(x.split(cfg.batch_size), y.split(cfg.batch_size), strict=True):
            loss = F.cross_entropy(head(xb)[:, :seen], yb)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            loss_sum += loss.item() * len(yb)
        loss_sum /= len(y)
    return loss_sum
