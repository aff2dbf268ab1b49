"""Discovery of installed method packages through the `learngene.methods` entry-point group.

A method package declares itself in its pyproject.toml:

    [project.entry-points."learngene.methods"]
    tleg = "tleg"

and the entry point's target (a module or object) may carry a one-line docstring shown by `learngene list`.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib.metadata import entry_points

GROUP = "learngene.methods"


@dataclass
class MethodInfo:
    name: str
    distribution: str
    version: str
    summary: str


def discover_methods() -> list[MethodInfo]:
    """The installed method packages, sorted by name (a package that fails to import shows the error)."""
    found = []
    for ep in entry_points(group=GROUP):
        try:
            target = ep.load()
            summary = ((target.__doc__ or "").strip().splitlines() or [""])[0]
        except Exception as exc:  # a broken plugin must not break `learngene list`
            summary = f"(failed to import: {exc})"
        dist = ep.dist
        found.append(MethodInfo(ep.name, dist.name if dist else "?", dist.version if dist else "?", summary))
    return sorted(found, key=lambda m: m.name)
