"""`tools/bench/nino_speedup.py --table`: saved runs merged into one table, the arms of a task and seed run apart
(e.g. the unguarded arms) joining one row, only when their AdamW runs agree; a checkpoint or arm the bench
cannot use is one parser error before any run."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools" / "bench"))
import nino_speedup as bench  # noqa: E402


def _payload(rows: list[tuple[str, int, float, list[str]]], seeds: list[int]) -> dict:
    """rows: (task, seed, AdamW's final validation loss, NiNo arms)."""
    return {
        "machine": "test",
        "steps": 10,
        "eval_every": 5,
        "seeds": seeds,
        "rows": [
            {"task": t, "seed": s, "adamw": {"final_val_loss": loss}, **{arm: {"arm": arm} for arm in arms}}
            for t, s, loss, arms in rows
        ],
    }


def test_arms_of_one_task_and_seed_join_one_row_and_other_rows_are_appended():
    guarded = _payload([("a", 1, 0.5, ["published", "shipped"]), ("a", 2, 0.4, ["published"])], [1, 2])
    unguarded = _payload(
        [("a", 1, 0.5, ["published-unguarded"]), ("b", 3, 0.3, ["published-unguarded"])], [1, 3]
    )
    merged = bench.merge_payloads([guarded, unguarded])
    assert [(r["task"], r["seed"]) for r in merged["rows"]] == [("a", 1), ("a", 2), ("b", 3)]
    assert set(merged["rows"][0]) == {"task", "seed", "adamw", "published", "shipped", "published-unguarded"}
    assert set(merged["rows"][1]) == {"task", "seed", "adamw", "published"}
    assert merged["seeds"] == [1, 2, 3]
    assert len(guarded["rows"][0]) == 5  # the inputs are left as they were


def test_an_arm_already_in_the_row_is_kept_from_the_first_file():
    first = _payload([("a", 1, 0.5, ["published"])], [1])
    second = _payload([("a", 1, 0.5, ["published"])], [1])
    second["rows"][0]["published"] = {"arm": "second"}
    assert bench.merge_payloads([first, second])["rows"][0]["published"] == {"arm": "published"}


def test_rows_whose_adamw_runs_differ_are_refused():
    first = _payload([("a", 1, 0.5, ["published"])], [1])
    second = _payload([("a", 1, 0.6, ["published-unguarded"])], [1])
    with pytest.raises(SystemExit, match="a seed 1: the saved AdamW runs differ"):
        bench.merge_payloads([first, second])


@pytest.mark.parametrize(
    ("argv", "culprit"),
    [(["--published", "{tmp}/missing.pt"], "missing.pt"), (["--arms", "published,fastest"], "fastest")],
)
def test_a_checkpoint_or_arm_it_cannot_use_is_one_line_before_any_run(tmp_path, argv, culprit):
    script = Path(bench.__file__)
    argv = [a.format(tmp=tmp_path) for a in argv]
    proc = subprocess.run(
        [sys.executable, str(script), *argv, "--json", str(tmp_path / "out.json")],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert lines[-1].startswith("nino_speedup.py: error: ") and culprit in lines[-1], proc.stderr
    assert not (tmp_path / "out.json").exists()
