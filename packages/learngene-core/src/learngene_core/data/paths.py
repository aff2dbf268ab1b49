"""Resolve `data.path` for on-disk datasets, failing with one line that says what is expected and where to get it."""

from __future__ import annotations

from pathlib import Path

from ..config import DataConfig
from ..errors import DataError


def dataset_path(cfg: DataConfig, name: str, layout: str, source: str) -> Path:
    """Return `cfg.path` as an existing Path, else a DataError naming the path, the layout, `source` and data.path."""
    if cfg.path is None:
        raise DataError(f"dataset '{name}' needs data.path=<path> pointing at {layout}; {source}")
    path = Path(cfg.path).expanduser()
    if not path.exists():
        raise DataError(f"dataset '{name}': data.path '{path}' does not exist; expected {layout}; {source}")
    return path


def layout_error(name: str, path: Path, problem: str, layout: str, source: str) -> DataError:
    """A DataError for data on disk that exists but is not laid out as expected."""
    return DataError(f"dataset '{name}': {problem} under data.path '{path}'; expected {layout}; {source}")
