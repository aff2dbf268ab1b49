"""TLEG: a learngene of two layer-weights linearly expanded into ViTs of any depth (AAAI 2024)."""

from learngene_core.lazy import lazy_exports

__version__ = "0.1.0"
__all__ = lazy_exports(__name__, {".method": ["TLEG", "TLEGSpec"]})
