"""Independent trainings of a bench in forked worker processes (each sets one torch thread itself)."""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable, Iterable
from typing import Any


def run_missing(
    fn: Callable[[Any], tuple[Any, Any]],
    keys: Iterable[Any],
    done: dict,
    workers: int,
    on_result: Callable[[Any, Any], None],
) -> None:
    """`fn(key) -> (key, result)` for every key not in `done`, `workers` at a time; results go into `done`.

    Workers are forked, so they share what the parent built before (ancestries, learngenes) without pickling it.
    """
    todo = [k for k in dict.fromkeys(keys) if k not in done]
    with multiprocessing.get_context("fork").Pool(workers) as pool:
        for key, result in pool.imap_unordered(fn, todo):
            done[key] = result
            on_result(key, result)
