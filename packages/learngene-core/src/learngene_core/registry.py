"""A tiny name -> factory registry (in the spirit of timm's model registry) with helpful errors."""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from .errors import LearngeneError

F = TypeVar("F", bound=Callable)


def did_you_mean(name: str, choices: list[str]) -> str:
    """Return ' (did you mean 'x'?)' for the closest choice, or ''."""
    close = difflib.get_close_matches(name, choices, n=1)
    return f" (did you mean '{close[0]}'?)" if close else ""


class Registry(Generic[F]):
    """Maps names to factories; `get` on an unknown name raises `error_cls` listing the known names."""

    def __init__(self, kind: str, error_cls: type[LearngeneError] = LearngeneError) -> None:
        self.kind = kind
        self.error_cls = error_cls
        self._entries: dict[str, F] = {}

    def register(self, name: str) -> Callable[[F], F]:
        def decorator(fn: F) -> F:
            if name in self._entries:
                raise ValueError(f"{self.kind} '{name}' is registered twice")
            self._entries[name] = fn
            return fn

        return decorator

    def get(self, name: str) -> F:
        try:
            return self._entries[name]
        except KeyError:
            known = ", ".join(sorted(self._entries))
            raise self.error_cls(
                f"unknown {self.kind} '{name}'{did_you_mean(name, list(self._entries))}; known: {known}"
            ) from None

    def names(self) -> list[str]:
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())
