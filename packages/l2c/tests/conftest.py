"""Shared fixtures: one torch thread, and a small random ViT pool with a selector and three distinct experts."""

from __future__ import annotations

import pytest
import timm
import torch

from l2c.aggregate import SELECTOR, TopKPredictor, expert_name
from l2c.config import LoraSettings
from l2c.pool import AdapterPool
from learngene_core.testing import one_torch_thread  # noqa: F401  (session fixture: one torch thread)

TASKS, PER_TASK, DIM = 3, 2, 32
OFFSETS = tuple(range(0, (TASKS + 1) * PER_TASK, PER_TASK))


def _tiny_pool(seed: int = 0) -> AdapterPool:
    torch.manual_seed(seed)
    backbone = timm.create_model(
        "vit_tiny_patch16_224", img_size=8, patch_size=4, in_chans=1, embed_dim=DIM, depth=2, num_heads=2,
        num_classes=0,
    )  # fmt: skip
    return AdapterPool(backbone)


@pytest.fixture
def predictor() -> TopKPredictor:
    """Selector + 3 experts whose LoRA B matrices are random (so every expert really differs), random heads."""
    pool = _tiny_pool()
    settings = LoraSettings(rank=2, alpha=2.0)
    torch.manual_seed(0)  # a draw under which the selector routes these images to more than one expert
    for name in (SELECTOR, *(expert_name(t) for t in range(TASKS))):
        pool.add(name, settings)
        with torch.no_grad():
            for param in pool.adapter_parameters(name):
                param.normal_(0, 0.5)
    torch.manual_seed(1)
    heads = torch.nn.Linear(DIM, TASKS * PER_TASK), torch.nn.Linear(DIM, TASKS * PER_TASK)
    return TopKPredictor(pool, heads[0], heads[1], OFFSETS, TASKS)


@pytest.fixture
def make_pool():
    """`make_pool(seed=0)`: a random tiny ViT (1x8x8 inputs, width 32, 2 blocks) in an AdapterPool."""
    return _tiny_pool


@pytest.fixture
def images() -> torch.Tensor:
    return torch.randn(12, 1, 8, 8, generator=torch.Generator().manual_seed(7))
