"""SWS: stage-wise weight sharing; one shared block per stage initialises ViTs of any depth (IJCAI 2024)."""

from learngene_core.lazy import lazy_exports

__version__ = "0.1.0"
__all__ = lazy_exports(__name__, {".method": ["SWS", "SWSSpec"]})
