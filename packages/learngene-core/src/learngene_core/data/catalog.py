"""The dataset registry and the checked call of a builder with the user's `data.options`.

A builder is `fn(cfg: DataConfig, seed: int, *, option=default, ...) -> DatasetSplits`; its keyword-only
parameters are the dataset's options, so the signature is the single source of their names, types and defaults.
"""

from __future__ import annotations

import inspect
import typing
from collections.abc import Callable
from typing import Any

from ..config import DataConfig, _convert
from ..errors import ConfigError, DataError
from ..registry import Registry, did_you_mean
from .splits import DatasetSplits

Builder = Callable[..., DatasetSplits]

DATASETS: Registry[Builder] = Registry("dataset", DataError)


def builder_options(builder: Builder) -> dict[str, Any]:
    """The options a builder accepts, with their defaults."""
    params = inspect.signature(builder).parameters.values()
    return {p.name: p.default for p in params if p.kind is inspect.Parameter.KEYWORD_ONLY}


def call_builder(name: str, cfg: DataConfig, seed: int) -> DatasetSplits:
    """Build dataset `name` after checking `cfg.options` against its builder's keyword-only parameters."""
    builder = DATASETS.get(name)
    known = builder_options(builder)
    hints = typing.get_type_hints(builder)
    options = {}
    for key, value in cfg.options.items():
        if key not in known:
            listed = ", ".join(known) or "none"
            raise DataError(
                f"dataset '{name}' has no option '{key}'{did_you_mean(key, list(known))}; options: {listed}"
            )
        try:
            options[key] = _convert(hints.get(key, Any), value, f"dataset '{name}'", f"data.options.{key}")
        except ConfigError as exc:
            raise DataError(str(exc)) from None
    return builder(cfg, seed, **options)


def check_at_least(minimum: float, **options: float) -> None:
    """Reject options below `minimum` with a DataError naming the `data.options` key."""
    for key, value in options.items():
        if value < minimum:
            raise DataError(f"data.options.{key} must be >= {minimum}, got {value}")
