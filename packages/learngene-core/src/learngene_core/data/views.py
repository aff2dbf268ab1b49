"""A filtered, relabelled and transformed view of a classification dataset (how the generic options are applied)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import torch
from torch import Tensor
from torch.utils.data import Dataset


class ClassView(Dataset):
    """Items `indices` of `base`, labels mapped through `label_map` and inputs through `transform`."""

    def __init__(
        self,
        base: Dataset,
        indices: Sequence[int],
        label_map: Mapping[int, int] | None = None,
        transform: Callable[[Tensor], Tensor] | None = None,
    ) -> None:
        self.base = base
        self.indices = [int(i) for i in indices]
        base_targets = base.targets  # type: ignore[attr-defined]
        old = [int(base_targets[i]) for i in self.indices]
        self.targets = [label_map[t] for t in old] if label_map is not None else old
        self.transform = transform

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        image, _ = self.base[self.indices[index]]
        if self.transform is not None:
            image = self.transform(image)
        return image, torch.tensor(self.targets[index], dtype=torch.long)
