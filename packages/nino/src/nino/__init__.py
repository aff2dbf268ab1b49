"""NiNo: neuron-interaction nowcasting that wraps any torch optimizer.

Public API (imported lazily, so `import nino` stays cheap and each piece loads only when used):
`NiNo` (the optimizer wrapper), `NiNoNet` / `WNNPlus` (the nowcasting networks), `build_graph` /
`NeuralGraph` (neural graphs), `load_nino` / `save_nino` (checkpoints), `k_schedule`, and the pipeline
(`build_task`, `collect`, `metatrain`, `open_dataset`).
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "NiNo": "nino.optim",
    "NiNoNet": "nino.model",
    "WNNPlus": "nino.model",
    "build_graph": "nino.graph",
    "NeuralGraph": "nino.graph",
    "flatten_params": "nino.graph",
    "write_params": "nino.graph",
    "load_nino": "nino.checkpoint",
    "save_nino": "nino.checkpoint",
    "k_schedule": "nino.schedule",
    "build_task": "nino.tasks",
    "CollectConfig": "nino.collect",
    "collect": "nino.collect",
    "MetatrainConfig": "nino.metatrain",
    "metatrain": "nino.metatrain",
    "open_dataset": "nino.trajectories",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'nino' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(list(globals()) + __all__)
