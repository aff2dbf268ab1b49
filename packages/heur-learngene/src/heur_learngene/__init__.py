"""Heur-Learngene: inherit the ancestry layers that change least across a stream of tasks (AAAI 2022)."""

from learngene_core.lazy import lazy_exports

__version__ = "0.1.0"
__all__ = lazy_exports(
    __name__,
    {
        ".collective": ["train_collective"],
        ".config": ["CollectiveConfig", "HeurSpec", "StreamConfig"],
        ".criterion": ["rank_layers"],
        ".tracking": ["LayerTracker"],
    },
)
