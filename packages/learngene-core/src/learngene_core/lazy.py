"""Public names of a package loaded on first use (PEP 562), so `import pkg` and `pkg --help` need no torch.

    # pkg/__init__.py
    from learngene_core.lazy import lazy_exports

    __all__ = lazy_exports(__name__, {".method": ["TLEG", "TLEGSpec"]})

`pkg.TLEG` and `from pkg import TLEG` import `pkg.method` the first time; `import pkg` alone imports nothing.
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import Any


class _LazyPackage(types.ModuleType):
    """A package module whose exported names load on first access."""

    __lazy_exports__: dict[str, str]

    def __getattr__(self, name: str) -> Any:  # only called when the name is not set yet
        where = self.__dict__.get("__lazy_exports__", {})
        if name not in where:
            raise AttributeError(f"module {self.__name__!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(where[name], self.__name__), name)
        super().__setattr__(name, value)
        return value

    def __setattr__(self, name: str, value: Any) -> None:
        # Importing a submodule sets `pkg.<submodule>`; an export of the same name (a function `sparsify` in
        # `pkg/sparsify.py`) must still win, as it does with an eager `from .sparsify import sparsify`.
        exported = name in self.__dict__.get("__lazy_exports__", {})
        if exported and isinstance(value, types.ModuleType) and value.__name__ == f"{self.__name__}.{name}":
            return
        super().__setattr__(name, value)

    def __dir__(self) -> list[str]:
        return sorted(set(super().__dir__()) | set(self.__lazy_exports__))


def lazy_exports(package: str, exports: dict[str, list[str]]) -> list[str]:
    """Make `package` load each name of `exports` ({".submodule": [names]}) on first use; return `__all__`."""
    module = sys.modules[package]
    module.__class__ = _LazyPackage
    module.__lazy_exports__ = {name: where for where, names in exports.items() for name in names}
    return sorted(module.__lazy_exports__)
