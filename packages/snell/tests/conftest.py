"""Shared fixtures: one torch thread, tiny timm ViT / Swin / ConvNeXt built from config (never downloaded)."""

from __future__ import annotations

import pytest
import timm
import torch

from learngene_core.testing import one_torch_thread  # noqa: F401  (session fixture: one torch thread)

NUM_CLASSES = 5


def _vit():
    return timm.create_model(
        "vit_tiny_patch16_224", img_size=32, patch_size=8, embed_dim=32, depth=2, num_heads=2,
        num_classes=NUM_CLASSES,
    )  # fmt: skip


def _swin():
    return timm.create_model(
        "swin_tiny_patch4_window7_224", img_size=32, patch_size=2, window_size=4, embed_dim=16,
        depths=(1, 1), num_heads=(1, 2), num_classes=NUM_CLASSES,
    )  # fmt: skip


def _convnext():
    return timm.create_model(
        "convnext_atto",
        dims=(8, 16, 32, 64),
        depths=(1, 1, 1, 1),
        conv_mlp=False,
        ls_init_value=1.0,
        num_classes=NUM_CLASSES,
    )


BUILDERS = {"vit": _vit, "swin": _swin, "convnext": _convnext}


@pytest.fixture
def make_backbone():
    """`make_backbone(kind='vit', seed=0)`: a tiny timm model of that family, seeded."""

    def make(kind: str = "vit", seed: int = 0):
        torch.manual_seed(seed)
        return BUILDERS[kind]()

    return make


@pytest.fixture
def images():
    return torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(7))
