"""A restricted unpickler for dataset files: numpy arrays and plain builtins only, never arbitrary objects."""

from __future__ import annotations

import importlib
import pickle
from typing import IO, Any

# (module, name) globals that array-and-list pickles need; "numpy.core" is read as numpy 2's "numpy._core".
_ALLOWED = {
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy._core.numeric", "_frombuffer"),
    ("_codecs", "encode"),  # bytes in protocol-2 pickles written by Python 3
    ("builtins", "set"),
    ("builtins", "frozenset"),
    ("builtins", "bytearray"),
}


class SafeUnpickler(pickle.Unpickler):
    """Unpickler whose `find_class` resolves only the allow-listed globals and refuses everything else."""

    def find_class(self, module: str, name: str) -> Any:
        canonical = (
            "numpy._core." + module[len("numpy.core.") :] if module.startswith("numpy.core.") else module
        )
        if (canonical, name) not in _ALLOWED:
            raise pickle.UnpicklingError(f"global '{module}.{name}' is not allowed in a dataset file")
        try:
            return getattr(importlib.import_module(canonical), name)
        except ImportError:  # numpy < 2 has no numpy._core
            return super().find_class(module, name)


def safe_load(file: IO[bytes]) -> Any:
    """Unpickle `file` with SafeUnpickler; Python 2 strings are decoded as latin-1 (what numpy arrays need)."""
    return SafeUnpickler(file, encoding="latin1").load()
