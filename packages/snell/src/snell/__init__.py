"""SNELL: sparse tuning with kernelised LoRA for timm backbones, at LoRA-level memory."""

from .config import SnellConfig
from .kernels import KERNELS
from .layers import SnellLinear
from .model import SnellModel, get_snell_model
from .official import import_official, load_official_state
from .sparsify import sparsify

__version__ = "0.1.0"

__all__ = [
    "KERNELS",
    "SnellConfig",
    "SnellLinear",
    "SnellModel",
    "get_snell_model",
    "import_official",
    "load_official_state",
    "sparsify",
]
