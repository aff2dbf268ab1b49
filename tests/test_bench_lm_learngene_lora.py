"""The numbers `tools/bench/lm_learngene_lora.py` reports, on hand-written runs: each seed's own best rate, epochs
and data fraction to reach random's and whole's best validation loss, the plateau check."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools" / "bench"))
import lm_learngene_lora as bench  # noqa: E402

FRACTIONS = [0.5, 1.0]


def _run(val: list[float]) -> dict:
    return {"test": val[-1], "val": val}


def _bench() -> tuple[dict, dict]:
    """heur beats random at half the data and reaches whole's loss between half and all of it (seed 0)."""
    curves = {  # (arm, seed): {fraction: val curve}, at the seed's best rate
        ("heur", 0): {0.5: [4.0, 3.3, 3.2, 3.3], 1.0: [4.25, 3.1, 3.0, 3.1]},
        ("heur", 1): {0.5: [4.0, 3.5, 3.4, 3.4], 1.0: [4.4, 3.4, 3.2, 3.2]},
        ("auto", 0): {0.5: [4.0, 3.9, 3.8, 3.7], 1.0: [4.0, 3.8, 3.6, 3.5]},
        ("auto", 1): {0.5: [4.0, 3.9, 3.8, 3.7], 1.0: [4.0, 3.8, 3.6, 3.5]},
        ("whole", 0): {0.5: [3.5, 3.2, 3.2, 3.2], 1.0: [3.4, 3.05, 3.05, 3.1]},
        ("whole", 1): {0.5: [3.5, 3.2, 3.2, 3.2], 1.0: [3.4, 3.0, 3.0, 3.0]},
        ("random", 0): {0.5: [4.6, 4.5, 4.4, 4.4], 1.0: [4.6, 4.4, 4.3, 4.2]},
        ("random", 1): {0.5: [4.6, 4.5, 4.4, 4.4], 1.0: [4.6, 4.4, 4.3, 4.3]},
    }
    best = {key: 3e-3 if key[1] == 0 else 1e-2 for key in curves}
    runs = {
        (arm, f, best[(arm, s)], s): _run(val) for (arm, s), by_f in curves.items() for f, val in by_f.items()
    }
    runs[("heur", 1.0, 1e-2, 0)] = _run([2.0, 2.0, 2.0, 2.0])  # not seed 0's best rate: ignored
    sweeps = {key: {"best": lr, "at_edge": key == ("auto", 1), "lrs": [lr]} for key, lr in best.items()}
    sweeps[("heur", 0)]["lrs"] = [3e-3, 1e-2]
    return runs, sweeps


def test_summarise_takes_each_seeds_own_best_rate_and_its_own_targets():
    runs, sweeps = _bench()
    rows = {r["arm"]: r for r in bench.summarise(runs, sweeps, [0, 1], FRACTIONS)}
    heur = rows["heur"]
    assert heur["lrs"] == [3e-3, 1e-2]
    assert heur["sweeps"][0] == {"0.003": 3.0, "0.01": 2.0}  # the sweep's record keeps every rate tried
    assert heur["best_vals"] == [3.0, 3.2]
    assert heur["best_val_mean"] == pytest.approx(3.1)
    assert rows["auto"]["lrs_at_sweep_edge"] == [False, True]
    # random's best: 4.2 (seed 0), 4.3 (seed 1); whole's: 3.05, 3.0
    assert heur["epochs_to_random_best"] == [2, 2]
    assert heur["fraction_for_random_best"] == [0.5, 0.5]  # already at the smallest fraction measured
    assert heur["epochs_to_whole_best"] == [3, None]
    # seed 0: 0.5 misses (3.2), 1.0 reaches (3.0): 0.5 + 0.5 * (3.2 - 3.05) / (3.2 - 3.0)
    assert heur["fraction_for_whole_best"] == [pytest.approx(0.875), None]
    assert rows["random"]["epochs_to_random_best"] == [4, 3]  # its own best, first reached
    assert rows["random"]["fraction_for_whole_best"] == [None, None]


def test_last_quarter_gain_is_zero_once_the_best_validation_loss_has_plateaued():
    assert bench.last_quarter_gain(_run([4.0, 3.1, 3.0, 3.2])) == 0.0  # best at epoch 3, overfits after
    assert bench.last_quarter_gain(_run([4.0, 3.5, 3.2, 3.0])) == pytest.approx(0.2)  # still falling


def test_the_tables_mark_unreached_targets_and_bounds_at_the_smallest_fraction():
    runs, sweeps = _bench()
    rows = bench.summarise(runs, sweeps, [0, 1], FRACTIONS)
    lines = bench.table(rows).splitlines()
    heur = next(line for line in lines if line.startswith("| heur "))
    assert "| ≤0.5, ≤0.5 |" in heur and "| 3, - | 0.88, - |" in heur
    assert "| auto | 0.003, 0.01 (edge) |" in "\n".join(lines)
    fractions = bench.fraction_table(rows, FRACTIONS).splitlines()
    assert fractions[0] == "| arm: best val loss at data fraction | 0.5 | 1 |"
    assert "| heur | 3.300 ± 0.141 | 3.100 ± 0.141 |" in fractions
