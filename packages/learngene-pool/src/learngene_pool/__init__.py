"""Learngene Pool: one ancestry distilled into a pool of block instances, stitched into many descendant sizes."""

from .aux import distill_aux, read_aux
from .build import assemble_pool, build_pool, load_pool
from .config import AuxConfig, BuildConfig
from .descendant import StitchedViT, build_descendant, load_descendant, save_descendant
from .finetune import evaluate_descendants, train_descendant
from .listing import list_descendants
from .pool import LearngenePool
from .stitching import StitchConfig, stitch_configs

__version__ = "0.1.0"
__all__ = [
    "AuxConfig",
    "BuildConfig",
    "LearngenePool",
    "StitchConfig",
    "StitchedViT",
    "assemble_pool",
    "build_descendant",
    "build_pool",
    "distill_aux",
    "evaluate_descendants",
    "list_descendants",
    "load_descendant",
    "load_pool",
    "read_aux",
    "save_descendant",
    "stitch_configs",
    "train_descendant",
]
