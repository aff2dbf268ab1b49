"""The JSON manifests of the pool's directories (aux model, pool, descendant): read with format and version checks."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from learngene_core.config import read_json_file
from learngene_core.errors import CheckpointError

POOL_NAME = "pool.json"
POOL_FORMAT = "learngene-pool"
POOL_VERSION = 1


def read_manifest(
    directory: str | Path,
    name: str,
    fmt: str,
    version: int,
    what: str,
    hint: str,
    fields: dict[str, type] | None = None,
) -> dict[str, Any]:
    """`directory/name` parsed, or a CheckpointError naming the file: missing (`hint` says which verb writes it),
    not JSON, of another format or version, or without one of `fields` (dotted path -> type) of that type."""
    directory = Path(directory)
    path = directory / name
    if not path.is_file():
        raise CheckpointError(f"{directory} is not {what}: no {name} ({hint})")
    manifest = read_json_file(path)
    if manifest.get("format") != fmt or manifest.get("version") != version:
        found = manifest
        raise CheckpointError(
            f"{path} is format {found.get('format')!r} version {found.get('version')!r}; "
            f"this learngene-pool reads {fmt!r} version {version}"
        )
    for key, kind in (fields or {}).items():
        value: Any = manifest
        for part in key.split("."):
            value = value.get(part) if isinstance(value, dict) else None
        if value is None or (isinstance(value, bool) and kind is not bool) or not isinstance(value, kind):
            raise CheckpointError(
                f"{path}: '{key}' is missing or not {_KINDS.get(kind, kind.__name__)} (damaged or edited?)"
            )
    return manifest


_KINDS = {str: "a string", int: "an integer", dict: "a mapping", list: "a list", bool: "true/false"}


def read_pool_manifest(directory: str | Path) -> dict[str, Any]:
    """The `pool.json` of a pool directory written by `build`."""
    return read_manifest(
        directory,
        POOL_NAME,
        POOL_FORMAT,
        POOL_VERSION,
        "a learngene pool",
        "write one with `build`",
        {"instances": list, "depth": int, "configs": list, "nearest_stitching": bool, "ancestry": dict},
    )
