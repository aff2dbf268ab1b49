"""SNELL: sparse tuning with kernelised LoRA for timm backbones, at LoRA-level memory."""

from learngene_core.lazy import lazy_exports

__version__ = "0.1.0"
__all__ = lazy_exports(
    __name__,
    {
        ".config": ["SnellConfig"],
        ".kernels": ["KERNELS"],
        ".layers": ["SnellLinear"],
        ".model": ["SnellModel", "get_snell_model"],
        ".official": ["import_official", "load_official_state"],
        ".sparsify": ["sparsify"],
    },
)
