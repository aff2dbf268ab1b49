"""`DatasetSplits`: the train/val/test datasets of one task plus what a model needs to know about them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from torch.utils.data import Dataset


@dataclass
class DatasetSplits:
    """Train/val/test datasets and their metadata; items are `(input, target)` tuples.

    Classification: input is a float tensor (C, H, W), target a long scalar; datasets expose `.targets`.
    Causal LM: input is a LongTensor (seq_len,) of token ids and the target is the same ids.
    """

    train: Dataset
    val: Dataset
    test: Dataset
    task: Literal["classification", "causal-lm"]
    input_shape: tuple[int, ...]  # (C, H, W) for images, (seq_len,) for text
    num_classes: int | None = None  # classification only
    vocab_size: int | None = None  # causal-lm only
    class_names: list[str] | None = None
    description: str = ""  # one line, filled in by `build_datasets`

    def __post_init__(self) -> None:
        if self.task == "classification" and self.num_classes is None:
            raise ValueError("classification splits need num_classes")
        if self.task == "causal-lm" and self.vocab_size is None:
            raise ValueError("causal-lm splits need vocab_size")

    def sizes(self) -> tuple[int, int, int]:
        """Number of items in train, val and test."""
        return len(self.train), len(self.val), len(self.test)  # type: ignore[arg-type]

    def describe(self, name: str) -> str:
        """One line such as 'digits: 1078/180/539 train/val/test, 10 classes, 1x8x8'."""
        counts = "/".join(map(str, self.sizes()))
        if self.task == "classification":
            shape = "x".join(map(str, self.input_shape))
            return f"{name}: {counts} train/val/test, {self.num_classes} classes, {shape}"
        return (
            f"{name}: {counts} train/val/test blocks, vocab {self.vocab_size}, seq_len {self.input_shape[0]}"
        )
