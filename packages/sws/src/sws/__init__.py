"""SWS: stage-wise weight sharing; one shared block per stage initialises ViTs of any depth (IJCAI 2024)."""

from .method import SWS, SWSSpec

__version__ = "0.1.0"
__all__ = ["SWS", "SWSSpec"]
