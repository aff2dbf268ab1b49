"""Shared tiny fixtures: a learnable TensorDataset, loaders over it, a small MLP and a tiny timm ViT.

Everything is CPU-only, offline and seeded, so tests stay fast and deterministic.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

IN_DIM, NUM_CLASSES = 8, 3


def make_dataset(n: int = 32, seed: int = 0, dim: int = IN_DIM, classes: int = NUM_CLASSES) -> TensorDataset:
    """Gaussian inputs labelled by a fixed random linear map (the map depends only on dim/classes)."""
    teacher = torch.randn(dim, classes, generator=torch.Generator().manual_seed(1234))
    x = torch.randn(n, dim, generator=torch.Generator().manual_seed(seed))
    return TensorDataset(x, (x @ teacher).argmax(1))


def make_loaders(n_train: int = 32, batch_size: int = 4, n_eval: int = 16, shuffle: bool = True):
    """(train, val, test) loaders over disjoint seeded samples of the same toy problem."""
    train = DataLoader(make_dataset(n_train, seed=0), batch_size=batch_size, shuffle=shuffle)
    val = DataLoader(make_dataset(n_eval, seed=1), batch_size=8)
    test = DataLoader(make_dataset(n_eval, seed=2), batch_size=8)
    return train, val, test


class TinyMLP(nn.Module):
    def __init__(self, dim: int = IN_DIM, hidden: int = 16, classes: int = NUM_CLASSES, dropout: float = 0.0):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(dim, hidden), nn.ReLU(), nn.Dropout(dropout))
        self.head = nn.Linear(hidden, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))


def make_mlp(seed: int = 0, **kwargs) -> TinyMLP:
    torch.manual_seed(seed)
    return TinyMLP(**kwargs)


def make_vit(seed: int = 0, num_classes: int = 3) -> nn.Module:
    import timm

    torch.manual_seed(seed)
    return timm.create_model(
        "vit_tiny_patch16_224",
        img_size=16,
        patch_size=4,
        embed_dim=32,
        depth=2,
        num_heads=2,
        num_classes=num_classes,
    )


@pytest.fixture
def single_thread():
    """Run a test on one torch thread (tiny models: threads cost more than they save), then restore."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def tiny_loaders():
    return make_loaders


@pytest.fixture
def tiny_mlp():
    return make_mlp


@pytest.fixture
def tiny_vit():
    return make_vit
