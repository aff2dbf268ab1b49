"""TLEG: a learngene of two layer-weights linearly expanded into ViTs of any depth (AAAI 2024)."""

from .method import TLEG, TLEGSpec

__version__ = "0.1.0"
__all__ = ["TLEG", "TLEGSpec"]
