"""The demo (tools/demo.py) at its smallest size: it runs end to end, and what its tables show holds.

Checked: at the demo's depth, each learngene descendant ends above the scratch descendant of the same
architecture, data, budget and seed on test accuracy, and reaches scratch's final validation accuracy within
the budget. Not checked: the one-epoch lead (small and seed-dependent at this scale, see the tleg/sws READMEs).
The root README quotes the demo's tables; their columns must be the ones the demo prints.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    env = {**os.environ, "MPLBACKEND": "Agg"}
    cmd = [sys.executable, str(ROOT / "tools" / "demo.py"), "--depths", "4", "--skip-baseline"]
    cmd += ["--output-dir", str(out / "runs"), "--json", str(out / "demo.json")]
    result = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=1800)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout, json.loads((out / "demo.json").read_text())


def test_demo_sections_are_numbered_once_each(demo):
    stdout, _ = demo
    sections = [line.split(".")[0] for line in stdout.splitlines() if line.startswith("== ")]
    assert sections == ["== 2", "== 3", "== 4", "== 5"]  # 1 (the baseline) is skipped at this size
    assert "scratch: scratch:" not in stdout


def test_learngene_descendants_beat_scratch_at_the_same_budget(demo):
    _, data = demo
    assert [m["method"] for m in data["methods"]] == ["tleg", "sws"]
    for method in data["methods"]:
        rows = {row["init"]: row for row in method["rows"]}
        learngene, scratch = rows["learngene"], rows["scratch"]
        assert learngene["final_test"] > scratch["final_test"], method["method"]
        assert learngene["epochs_to_scratch_final"] is not None, method["method"]
        assert method["learngene_parameters"] < method["ancestry_parameters"]


def test_scratch_rows_leave_epochs_to_scratch_empty(demo):
    stdout, _ = demo
    rows = [line for line in stdout.splitlines() if line.startswith("| 4 | scratch |")]
    assert len(rows) == 2 and all(row.endswith("| - |") for row in rows)


def test_root_readme_quotes_the_demo_tables(demo):
    stdout, _ = demo
    header = next(line for line in stdout.splitlines() if line.startswith("| depth | init |"))
    readme = (ROOT / "README.md").read_text()
    assert readme.count(header) == 2, "the root README quotes both demo tables with the demo's own header"
    for line in stdout.splitlines():
        if line.startswith(("tleg: learngene ", "sws: learngene ")):
            sizes = line.split("; aux net")[0]  # parameter counts: the same at every size, seed and machine
            assert sizes in readme, f"the root README quotes the demo's line '{sizes}; ...'"
