"""L2C: class-incremental learning with a task selector and cooperating per-task LoRA experts (top-k weighted)."""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# name -> module; imported on first use so that `l2c --help` and `l2c list` never load torch
_EXPORTS = {
    "AdapterPool": "pool",
    "ClassStatistics": "statistics",
    "L2CConfig": "config",
    "TopKPredictor": "aggregate",
    "class_statistics": "statistics",
    "load_l2c_config": "config",
    "sample_features": "statistics",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'l2c' has no attribute '{name}'")
    return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
