"""Learngene Pool: one ancestry distilled into a pool of block instances, stitched into many descendant sizes."""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"
# public name -> module; imported on first use, so `learngene-pool --help` does not pay for torch
_EXPORTS = {
    "AuxConfig": "config",
    "BuildConfig": "config",
    "LearngenePool": "pool",
    "StitchConfig": "stitching",
    "StitchedViT": "descendant",
    "assemble_pool": "build",
    "build_descendant": "descendant",
    "build_pool": "build",
    "distill_aux": "aux",
    "evaluate_descendants": "finetune",
    "list_descendants": "listing",
    "load_descendant": "descendant",
    "load_pool": "build",
    "read_aux": "aux",
    "save_descendant": "descendant",
    "stitch_configs": "stitching",
    "train_descendant": "finetune",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'learngene_pool' has no attribute {name!r}")
    return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
