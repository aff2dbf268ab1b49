"""LoRAMoE: a mixture of LoRA experts with localised balancing for Hugging Face decoder LMs."""

from .config import LoraMoEConfig
from .layers import LoraMoELayer
from .loss import coefficients, cv_squared, importance, localized_balancing_loss
from .model import LoraMoEModel, find_targets, get_loramoe_model
from .official import import_official_adapter, load_official_adapter

__version__ = "0.1.0"

__all__ = [
    "LoraMoEConfig",
    "LoraMoELayer",
    "LoraMoEModel",
    "coefficients",
    "cv_squared",
    "find_targets",
    "get_loramoe_model",
    "import_official_adapter",
    "importance",
    "load_official_adapter",
    "localized_balancing_loss",
]
