"""LoRAMoE: a mixture of LoRA experts with localised balancing for Hugging Face decoder LMs."""

from learngene_core.lazy import lazy_exports

__version__ = "0.1.0"
__all__ = lazy_exports(
    __name__,
    {
        ".config": ["LoraMoEConfig"],
        ".layers": ["LoraMoELayer"],
        ".loss": ["coefficients", "cv_squared", "importance", "localized_balancing_loss"],
        ".model": ["LoraMoEModel", "find_targets", "get_loramoe_model"],
        ".official": ["import_official_adapter", "load_official_adapter", "read_official_adapter"],
    },
)
