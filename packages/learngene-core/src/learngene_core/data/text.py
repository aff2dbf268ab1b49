"""Causal-LM datasets: fixed-length blocks of token ids, each item `(ids, ids)` (the model shifts targets itself)."""

from __future__ import annotations

import torch
from torch import Tensor
from torch.utils.data import Dataset


class TokenBlocks(Dataset):
    """Rows of a LongTensor (N, seq_len) served as `(ids, ids)`."""

    def __init__(self, blocks: Tensor) -> None:
        if blocks.dim() != 2 or blocks.dtype != torch.long:
            raise ValueError(f"blocks must be a 2-d LongTensor, got {tuple(blocks.shape)} {blocks.dtype}")
        self.blocks = blocks

    def __len__(self) -> int:
        return len(self.blocks)

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        ids = self.blocks[index]
        return ids, ids.clone()


def cut_blocks(stream: Tensor, seq_len: int) -> Tensor:
    """Cut a 1-d token stream into consecutive (N, seq_len) blocks, dropping the incomplete tail."""
    count = len(stream) // seq_len
    return stream[: count * seq_len].view(count, seq_len)
