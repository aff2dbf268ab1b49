"""Auto-Learngene: a meta-network learns which ancestry layers a descendant should inherit (arXiv 2305.02279)."""

from learngene_core.lazy import lazy_exports

__version__ = "0.1.0"
__all__ = lazy_exports(
    __name__,
    {
        ".condense": ["condense"],
        ".config": ["AutoSpec", "CondenseConfig"],
        ".meta": ["AncestryFeatures", "MetaTransferLoss"],
        ".transfer": ["MetaWeights", "Regressor", "Student"],
    },
)
