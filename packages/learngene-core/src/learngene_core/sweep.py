"""A hyperparameter sweep that widens itself while its best value sits at an edge of the grid.

A baseline's learning rate is only tuned if the best rate is inside the grid: at an edge, a better one may lie
beyond it. `sweep` runs every grid value, then, while the best is the lowest or highest value tried, tries one
more value beyond that edge, one more grid step (the grid's mean ratio between neighbours) past the values tried
on that side, rounded to one significant digit: 1e-3, 3e-3, 1e-2 extends to 3e-2, 1e-1 or 3e-4, 1e-4; at most
`max_extensions` times in all.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

R = TypeVar("R")


@dataclass
class SweepResult(Generic[R]):
    """Every value tried (ascending) with its run's result, and the best value."""

    best: float
    results: dict[float, R]
    at_edge: bool  # the best is still the lowest or highest value tried (extensions ran out)


def _beyond(edge: float, tried_edge: float, ratio: float, steps: int) -> float:
    """`steps` grid steps of `ratio` past the grid's `edge`, rounded to one significant digit if that stays
    strictly beyond `tried_edge`, the outermost value tried on that side."""
    exact = edge * ratio**steps
    rounded = float(f"{exact:.0e}")
    return rounded if (rounded - tried_edge) * (exact - tried_edge) > 0 else exact


def sweep(
    run: Callable[[float], R],
    grid: Sequence[float],
    score: Callable[[R], float],
    higher_is_better: bool = True,
    max_extensions: int = 2,
) -> SweepResult[R]:
    """Run `run(value)` for each grid value and extend the grid past an edge while the best is there.

    `score` reads a run's result (e.g. its plateau accuracy); ties go to the lower value. The grid needs at
    least two distinct positive values.
    """
    values = sorted(set(grid))
    if len(values) < 2 or values[0] <= 0:
        raise ValueError(f"a sweep needs at least two distinct positive values, got {list(grid)}")
    results = {value: run(value) for value in values}
    sign = 1.0 if higher_is_better else -1.0

    def best_of() -> float:
        return max(results, key=lambda v: (sign * score(results[v]), -v))

    ratio = (values[-1] / values[0]) ** (1 / (len(values) - 1))
    below = above = 0  # extensions so far on each side
    for _ in range(max_extensions):
        tried = sorted(results)
        best = best_of()
        if best == tried[0]:
            below += 1
            value = _beyond(values[0], tried[0], 1 / ratio, below)
        elif best == tried[-1]:
            above += 1
            value = _beyond(values[-1], tried[-1], ratio, above)
        else:
            break
        results[value] = run(value)
    tried = sorted(results)
    best = best_of()
    return SweepResult(best, {v: results[v] for v in tried}, best in (tried[0], tried[-1]))
