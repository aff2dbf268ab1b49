"""What every stage works on: the config, the task stream over the data, and the adapter pool on the backbone."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from learngene_core.continual import TaskStream, make_split
from learngene_core.continual.split import TaskSplit
from learngene_core.data import build_datasets
from learngene_core.pretrained import build_backbone

from .config import L2CConfig
from .pool import AdapterPool


@dataclass
class Context:
    cfg: L2CConfig
    stream: TaskStream
    pool: AdapterPool

    @property
    def split(self) -> TaskSplit:
        return self.stream.split

    def loader(self, dataset: Dataset, shuffle: bool = False, seed: int = 0) -> DataLoader | None:
        """A loader over `dataset` (None when it is empty, e.g. a dataset without a val split)."""
        if len(dataset) == 0:  # type: ignore[arg-type]
            return None
        size = self.cfg.data.batch_size if shuffle else self.cfg.eval.batch_size
        generator = torch.Generator().manual_seed(seed)
        return DataLoader(dataset, batch_size=size, shuffle=shuffle, generator=generator if shuffle else None)

    @torch.no_grad()
    def features(self, adapter: str, dataset: Dataset) -> tuple[Tensor, Tensor]:
        """Backbone features with `adapter` and the labels of every sample of `dataset`."""
        self.pool.eval()
        xs, ys = [], []
        for x, y in DataLoader(dataset, batch_size=self.cfg.eval.batch_size):
            xs.append(self.pool.features(x, adapter))
            ys.append(y)
        return torch.cat(xs), torch.cat(ys)


def build_split(cfg: L2CConfig, num_classes: int) -> TaskSplit:
    s = cfg.scenario
    return make_split(
        num_classes,
        num_tasks=s.num_tasks,
        task_size=s.task_size,
        first_task_size=s.first_task_size,
        seed=s.order_seed,
        order=s.class_order,
    )


def build_context(cfg: L2CConfig, split_file: Path | None = None) -> Context:
    """Load the data, cut it into tasks (or reuse the split saved at `split_file`), build the frozen backbone."""
    from learngene_core.continual import load_split

    splits = build_datasets(cfg.data, cfg.seed)
    assert splits.num_classes is not None
    split = load_split(split_file) if split_file is not None else build_split(cfg, splits.num_classes)
    stream = TaskStream(splits, split)
    backbone = build_backbone(  # frozen: it must see the image size it was pre-trained on
        replace(cfg.model), num_classes=0, input_shape=splits.input_shape, seed=cfg.seed, package="l2c",
        resize_position_embeddings=False,
    )  # fmt: skip
    backbone.eval()
    return Context(cfg, stream, AdapterPool(backbone))
