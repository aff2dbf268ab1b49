"""The self-widening sweep behind the benches' tuned baselines, on hand-written score functions."""

from __future__ import annotations

import math

import pytest

from learngene_core.sweep import sweep

GRID = [1e-3, 3e-3, 1e-2]


def peaked_at(peak: float):
    """A score that is highest at `peak` and falls with the log distance from it; records every value run."""
    calls: list[float] = []

    def run(lr: float) -> float:
        calls.append(lr)
        return -abs(math.log10(lr) - math.log10(peak))

    return run, calls


def test_an_interior_best_runs_the_grid_only():
    run, calls = peaked_at(3e-3)
    result = sweep(run, GRID, score=lambda s: s)
    assert calls == GRID
    assert result.best == 3e-3 and not result.at_edge
    assert list(result.results) == GRID


def test_a_best_at_the_top_edge_extends_upward_until_it_is_interior():
    run, calls = peaked_at(3e-2)
    result = sweep(run, GRID, score=lambda s: s)
    assert calls == [*GRID, 3e-2, 1e-1]  # 3e-2 was the top edge, so one more point confirms it
    assert result.best == 3e-2 and not result.at_edge
    assert list(result.results) == [*GRID, 3e-2, 1e-1]  # ascending


def test_a_best_at_the_bottom_edge_extends_downward():
    run, calls = peaked_at(3e-4)
    result = sweep(run, GRID, score=lambda s: s)
    assert calls == [*GRID, 3e-4, 1e-4]
    assert result.best == 3e-4 and not result.at_edge


def test_extensions_run_out_and_say_the_best_is_still_at_the_edge():
    run, calls = peaked_at(1.0)
    result = sweep(run, GRID, score=lambda s: s, max_extensions=1)
    assert calls == [*GRID, 3e-2]
    assert result.best == 3e-2 and result.at_edge
    run, calls = peaked_at(1.0)
    assert sweep(run, GRID, score=lambda s: s, max_extensions=0).at_edge and calls == GRID


def test_lower_is_better_for_losses_and_ties_go_to_the_lower_value():
    losses = {1e-3: 0.5, 3e-3: 0.4, 1e-2: 0.9}
    assert sweep(losses.__getitem__, GRID, score=lambda s: s, higher_is_better=False).best == 3e-3
    flat, calls = (lambda lr: 1.0), []
    tied = sweep(lambda lr: calls.append(lr) or flat(lr), [1e-3, 1e-2], score=lambda s: s, max_extensions=1)
    assert tied.best == 1e-4 and calls == [1e-3, 1e-2, 1e-4]  # lowest of the ties is an edge: extended down


def test_an_uneven_grid_steps_by_its_mean_ratio_and_never_repeats_a_value():
    run, calls = peaked_at(1.0)
    sweep(run, [1e-3, 1.5e-3], score=lambda s: s, max_extensions=1)
    assert calls[-1] == pytest.approx(2e-3)  # 2.25e-3 rounded to one significant digit, still beyond
    run, calls = peaked_at(10.0)
    sweep(run, [1.0, 1.1], score=lambda s: s, max_extensions=1)
    assert calls[-1] == pytest.approx(1.21)  # rounding to 1.0 would not be beyond the edge: kept exact


def test_a_grid_needs_two_distinct_positive_values():
    for grid in ([1e-3], [1e-3, 1e-3], [0.0, 1e-3]):
        with pytest.raises(ValueError, match="two distinct positive"):
            sweep(lambda lr: lr, grid, score=lambda s: s)
