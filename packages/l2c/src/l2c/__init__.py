"""L2C: class-incremental learning with a task selector and cooperating per-task LoRA experts (top-k weighted)."""

from .aggregate import TopKPredictor
from .config import L2CConfig, load_l2c_config
from .pool import AdapterPool
from .statistics import ClassStatistics, class_statistics, sample_features

__version__ = "0.1.0"

__all__ = [
    "AdapterPool",
    "ClassStatistics",
    "L2CConfig",
    "TopKPredictor",
    "class_statistics",
    "load_l2c_config",
    "sample_features",
]
