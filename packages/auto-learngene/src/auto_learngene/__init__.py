"""Auto-Learngene: a meta-network learns which ancestry layers a descendant should inherit (arXiv 2305.02279)."""

from .condense import condense
from .config import AutoSpec, CondenseConfig
from .meta import AncestryFeatures, MetaTransferLoss
from .transfer import MetaWeights, Regressor, Student

__version__ = "0.1.0"
__all__ = [
    "AncestryFeatures",
    "AutoSpec",
    "CondenseConfig",
    "MetaTransferLoss",
    "MetaWeights",
    "Regressor",
    "Student",
    "condense",
]
