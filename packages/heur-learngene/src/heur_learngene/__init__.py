"""Heur-Learngene: inherit the ancestry layers that change least across a stream of tasks (AAAI 2022)."""

from .collective import train_collective
from .config import CollectiveConfig, HeurSpec, StreamConfig
from .criterion import rank_layers
from .tracking import LayerTracker

__version__ = "0.1.0"
__all__ = ["CollectiveConfig", "HeurSpec", "LayerTracker", "StreamConfig", "rank_layers", "train_collective"]
