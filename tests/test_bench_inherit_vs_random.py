"""The numbers `tools/bench/inherit_vs_random.py` reports, on hand-written runs: plateaus, epochs, seeds won."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools" / "bench"))
import inherit_vs_random as bench  # noqa: E402

from learngene_core.layered_models import vit_learngene  # noqa: E402


def test_converged_is_the_mean_validation_accuracy_of_the_last_quarter_of_epochs():
    assert bench.converged([0.1, 0.5, 0.6, 0.7, 0.8, 0.9, 0.7, 0.9]) == pytest.approx(0.8)
    assert bench.converged([0.4]) == 0.4


def test_epochs_to_reach_counts_from_one_and_is_none_when_never_reached():
    curve = [0.2, 0.6, 0.5, 0.8]
    assert bench.epochs_to_reach(curve, 0.6) == 2  # reaching counts, the first crossing wins
    assert bench.epochs_to_reach(curve, 0.7) == 4
    assert bench.epochs_to_reach(curve, 0.9) is None


def _run(test: float, val: list[float]) -> dict:
    return {"test": test, "val": val, "parameters": 100}


def test_summarise_uses_each_seeds_best_rate_and_compares_with_random_seed_by_seed():
    runs = {
        ("heur", 5, 1e-3, 0): _run(0.70, [0.2, 0.5, 0.6, 0.6]),
        ("heur", 5, 3e-3, 1): _run(0.40, [0.3, 0.3, 0.3, 0.3]),
        ("heur", 5, 3e-3, 0): _run(0.99, [0.9, 0.9, 0.9, 0.9]),  # not seed 0's best rate: ignored
        ("random", 5, 1e-3, 0): _run(0.60, [0.1, 0.4, 0.5, 0.5]),
        ("random", 5, 1e-3, 1): _run(0.50, [0.2, 0.7, 0.8, 0.8]),
    }
    best = {
        ("heur", 5, 0): {"lr": 1e-3, "at_edge": True},
        ("heur", 5, 1): {"lr": 3e-3, "at_edge": False},
        ("random", 5, 0): {"lr": 1e-3, "at_edge": False},
        ("random", 5, 1): {"lr": 1e-3, "at_edge": False},
    }
    heur, random = bench.summarise(runs, best, ("heur", "random"), 5, [0, 1], {"heur": 60, "random": 0})
    assert heur["tests"] == [0.70, 0.40]
    assert heur["lrs"] == [1e-3, 3e-3] and heur["at_edge"] == [True, False]
    assert heur["test_mean"] == pytest.approx(0.55)
    assert heur["test_std"] == pytest.approx(0.2121, abs=1e-4)
    assert heur["seeds_above_random"] == 1  # 0.70 > 0.60 in seed 0, 0.40 < 0.50 in seed 1
    assert heur["epochs_to_converge"] == [3, 1]  # its own plateaus: 0.6 and 0.3
    assert heur["epochs_to_random_plateau"] == [2, None]  # random's plateaus: 0.5 and 0.8
    assert heur["prior_steps"] == 60 and heur["epochs"] == 4
    assert random["seeds_above_random"] == 0


def test_table_marks_the_rates_a_sweep_left_at_an_edge():
    row = {
        "arm": "heur", "shots": 5, "parameters": 1234, "lrs": [1e-3, 3e-3], "at_edge": [True, False],
        "tests": [0.7, 0.4], "test_mean": 0.55, "test_std": 0.2121, "seeds_above_random": 1,
        "epochs_to_converge": [3, 1], "epochs_to_random_plateau": [2, None], "prior_steps": 60,
    }  # fmt: skip
    line = bench.table([row]).splitlines()[-1]
    assert line == "| 5 | heur | 1,234 | 0.001*, 0.003 | 0.550 ± 0.212 | 1/2 | 3, 1 | 2, - | 60 |"


def test_mean_mlp_hidden_gives_uniform_blocks_the_same_parameter_count():
    kwargs = {"img_size": 16, "patch_size": 4, "in_chans": 1, "embed_dim": 8, "depth": 3, "num_heads": 2}
    widened = vit_learngene(mlp_hidden=[24, 24, 12], **kwargs)
    hidden = bench.mean_mlp_hidden(widened)
    assert hidden == 20
    uniform = vit_learngene(mlp_ratio=hidden / 8, **kwargs)
    assert sum(p.numel() for p in uniform.parameters()) == sum(p.numel() for p in widened.parameters())
