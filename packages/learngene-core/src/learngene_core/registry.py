"""A tiny name -> factory registry (in the spirit of timm's model registry) with helpful errors."""

from __future__ import annotations

import ast
import difflib
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
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


def declared_entries(sources: Iterable[Path], registry: str) -> dict[str, str]:
    """Names registered with `<registry>.register("name")` in the Python files `sources`, read without importing
    them (so a console script's `list` imports no torch), each with the first docstring line of the function or
    class it decorates ("" when registered by a call). Sorted by name."""
    found = {}
    for source in sources:
        for node in ast.walk(ast.parse(Path(source).read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
                for decorator in node.decorator_list:
                    if (name := _registered_name(decorator, registry)) is not None:
                        found[name] = (ast.get_docstring(node) or "").strip().split("\n")[0]
            elif isinstance(node, ast.Call) and (name := _registered_name(node.func, registry)) is not None:
                found[name] = ""  # REGISTRY.register("name")(factory)
    return dict(sorted(found.items()))


def _registered_name(node: ast.AST, registry: str) -> str | None:
    """The name if `node` is the call `<registry>.register("name")`, else None."""
    if not (
        isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "register"
    ):
        return None
    owner, args = node.func.value, node.args
    if isinstance(owner, ast.Name) and owner.id == registry and args and isinstance(args[0], ast.Constant):
        return str(args[0].value)
    return None
