"""The `l2c` console script in-process on a shrunken tiny preset: stages, outputs, the results table, one-line errors."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from l2c.cli import main
from learngene_core.testing import assert_one_error_line

FAST = [
    "data.batch_size=64", "selector.train.epochs=2", "experts.train.epochs=2", "baseline_train.epochs=1",
    "selector.align.epochs=3", "experts.align.epochs=3", "eval.topk=2",
]  # fmt: skip


def run(capsys, *argv) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def assert_user_error(code: int, err: str, *culprits: str) -> None:
    assert_one_error_line(code, err, "l2c", *culprits)


def listing(folder: Path) -> dict[str, int]:
    return {str(p.relative_to(folder)): p.stat().st_mtime_ns for p in sorted(folder.rglob("*"))}


@pytest.fixture(scope="module")
def selector_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("l2c") / "sel"
    assert main(["train-selector", "--config", "tiny", "--output-dir", str(out), *FAST]) == 0
    return out


@pytest.fixture(scope="module")
def experts_run(selector_run, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("l2c") / "exp"
    shutil.copytree(selector_run, out)
    assert main(["train-experts", "--run", str(out)]) == 0
    return out


def test_selector_stage_writes_split_snapshots_and_matrix(selector_run):
    split = json.loads((selector_run / "split.json").read_text())
    assert split["task_sizes"] == [2] * 5 and sorted(split["order"]) == list(range(10))
    assert len(split["sha256"]) == 64 and all(t["train"]["count"] > 0 for t in split["tasks"])
    assert all((selector_run / "selector" / f"after_task_{t}.safetensors").is_file() for t in range(5))
    matrix = json.loads((selector_run / "selector" / "accuracy.json").read_text())
    assert matrix["matrix"][0][0] > 0.8  # the first two digits are learnt (real data, 2 epochs)
    assert (selector_run / "selector" / "accuracy.png").is_file()


def test_eval_reports_topk_and_top1_matrices(experts_run, capsys):
    code, out, _ = run(capsys, "eval", "--run", experts_run, "--topk", 2)
    assert code == 0
    summary = json.loads(out.strip().splitlines()[-1])
    assert set(summary) == {"top2", "top1"} and 0 <= summary["top2"]["faa"] <= 1
    assert "task recall@2" in out and "after task 4" in out
    saved = json.loads((experts_run / "eval" / "top2" / "accuracy.json").read_text())
    assert saved["summary"]["faa"] == pytest.approx(summary["top2"]["faa"])
    assert (experts_run / "eval" / "top2" / "top1_accuracy.png").is_file()


def test_eval_before_any_task_is_trained_is_refused(selector_run, capsys):
    before = listing(selector_run)
    code, _, err = run(capsys, "eval", "--run", selector_run, "--topk", 1)
    assert_user_error(code, err, "no trained experts", "train-experts")
    assert listing(selector_run) == before


def test_k_larger_than_the_tasks_seen_is_refused(experts_run, capsys):
    before = listing(experts_run)
    code, _, err = run(capsys, "eval", "--run", experts_run, "--topk", 6)
    assert_user_error(code, err, "top-k 6", "1..5")
    assert listing(experts_run) == before


def test_experts_twice_or_with_another_split_are_refused(experts_run, selector_run, capsys):
    before = listing(experts_run)
    code, _, err = run(capsys, "train-experts", "--run", experts_run)
    assert_user_error(code, err, "already exists")
    code, _, err = run(capsys, "train-experts", "--run", selector_run, "scenario.order_seed=7")
    assert_user_error(code, err, "'scenario' differs")
    assert listing(experts_run) == before


@pytest.mark.parametrize(
    ("overrides", "culprits"),
    [
        (["scenario.class_order=[0,1,2,3,4,5,6,7,8,8]"], ["class order repeats class 8"]),
        (["data.name=cifar100", "data.path={empty}"], ["dataset 'cifar100'", "no file train"]),
        (["eval.topk=6"], ["top-k 6", "1..5"]),
        (["experts.lora.rank=0"], ["rank must be >= 1"]),
    ],
)
def test_bad_input_fails_before_the_run_directory_exists(tmp_path, capsys, overrides, culprits):
    (tmp_path / "empty").mkdir()
    overrides = [o.format(empty=tmp_path / "empty") for o in overrides]
    code, _, err = run(capsys, "run", "--config", "tiny", "--output-dir", tmp_path / "out", *overrides)
    assert_user_error(code, err, *culprits)
    assert not (tmp_path / "out").exists()


def test_a_used_output_dir_is_refused_untouched(selector_run, capsys):
    before = listing(selector_run)
    code, _, err = run(capsys, "run", "--config", "tiny", "--output-dir", selector_run)
    assert_user_error(code, err, "is not empty", "--resume")
    assert listing(selector_run) == before


def test_list_shows_the_presets(capsys):
    code, out, _ = run(capsys, "list")
    assert code == 0 and "tiny" in out
