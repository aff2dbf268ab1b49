"""Every l2c stage continues exactly: stopped between two tasks or inside one and resumed, a command ends with the
weights and accuracy matrices of one that ran through; stopped before its first checkpoint, it reruns in place."""

from __future__ import annotations

import contextlib
import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from l2c.cli import main
from learngene_core.continual import AccuracyMatrix
from learngene_core.testing import assert_resume_is_exact, interrupt_after_checkpoint, recorded_steps

# 5 tasks of 2 epochs for the selector and the experts, one checkpoint an epoch
FAST = [
    "data.batch_size=128", "selector.train.epochs=2", "experts.train.epochs=2", "baseline_train.epochs=1",
    "selector.align.epochs=2", "experts.align.epochs=2", "eval.topk=2",
]  # fmt: skip


def weights(folder: Path) -> dict[str, dict[str, torch.Tensor]]:
    return {str(p.relative_to(folder)): load_file(p) for p in sorted(folder.rglob("*.safetensors"))}


def assert_same_weights(expected: Path, got: Path) -> None:
    a, b = weights(expected), weights(got)
    assert a and a.keys() == b.keys()
    for name in a:
        assert a[name].keys() == b[name].keys(), name
        assert all(torch.equal(a[name][k], b[name][k]) for k in a[name]), name


def matrices(folder: Path) -> dict[str, dict]:
    """The accuracy matrices and results of a run (not the Trainer's per-task files)."""
    return {
        str(p.relative_to(folder)): json.loads(p.read_text())
        for p in sorted(folder.rglob("*.json"))
        if not any(part.startswith("task_") for part in p.parts)
    }


@contextlib.contextmanager
def stop_between_tasks(matrix_file: str, tasks: int) -> Iterator[None]:
    """A Ctrl-C right after a stage's `matrix_file` records its first `tasks` tasks, before the next one starts
    (the next task needs the stage's state from its files: no Trainer checkpoint of it exists yet)."""
    original = AccuracyMatrix.save_json

    def save_then_stop(self: AccuracyMatrix, path) -> None:
        original(self, path)
        if str(path).endswith(matrix_file) and self.learnt() == tasks:
            raise KeyboardInterrupt

    AccuracyMatrix.save_json = save_then_stop  # type: ignore[method-assign]
    try:
        yield
    finally:
        AccuracyMatrix.save_json = original  # type: ignore[method-assign]


def test_run_stopped_after_task_1s_expert_resumes_to_the_same_weights_and_matrices(tmp_path):
    # the selector is restored from its files, experts 0-1, the shared head and the class statistics from theirs;
    # expert 2 starts from expert 1, then the evaluation and the baselines run (train-experts below stops inside a
    # task, where the Trainer's checkpoint takes over)
    stop = stop_between_tasks("experts/top1_validation.json", 2)
    assert_resume_is_exact(main, ["run", "--config", "tiny", *FAST], tmp_path, stop=stop)
    assert matrices(tmp_path / "reference") == matrices(tmp_path / "run")
    assert set(matrices(tmp_path / "run")) >= {"selector/accuracy.json", "experts/top1_validation.json"}
    # a finished run resumed again trains nothing and finds the same results
    with recorded_steps() as steps:
        assert (
            main(["run", "--config", "tiny", *FAST, "--output-dir", str(tmp_path / "run"), "--resume"]) == 0
        )
    assert steps == [] and matrices(tmp_path / "reference") == matrices(tmp_path / "run")


@pytest.fixture(scope="module")
def selector_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("l2c-resume") / "sel"
    assert main(["train-selector", "--config", "tiny", "--output-dir", str(out), *FAST]) == 0
    return out


def test_train_experts_resumes_after_a_stop_in_task_1(selector_run, tmp_path):
    reference, run = tmp_path / "reference", tmp_path / "run"
    shutil.copytree(selector_run, reference)
    shutil.copytree(selector_run, run)
    with recorded_steps() as all_steps:
        assert main(["train-experts", "--run", str(reference)]) == 0
    with interrupt_after_checkpoint(3), recorded_steps() as stopped:
        assert main(["train-experts", "--run", str(run)]) == 130
    assert main(["train-experts", "--run", str(run)]) == 2  # a checkpoint is there to protect: needs --resume
    with recorded_steps() as resumed:
        assert main(["train-experts", "--run", str(run), "--resume"]) == 0
    assert resumed == all_steps[len(stopped) :]
    assert_same_weights(reference / "experts", run / "experts")
    assert matrices(reference / "experts") == matrices(run / "experts")
    # expert 0's LoRA learnt (loading the selector into the pool must not freeze it): its B is no longer zero
    lora_b = [
        v for k, v in load_file(reference / "experts" / "expert_0.safetensors").items() if "lora_B" in k
    ]
    assert lora_b and all(v.abs().sum() > 0 for v in lora_b)


def test_train_selector_stopped_between_tasks_resumes(selector_run, tmp_path):
    out = tmp_path / "sel"
    argv = ["train-selector", "--config", "tiny", "--output-dir", str(out)]
    with stop_between_tasks("selector/accuracy.json", 2):
        assert main([*argv, *FAST]) == 130
    assert main([*argv, *FAST]) == 2  # a stopped run with checkpoints is not started over without --resume
    assert main([*argv, "--resume", *FAST]) == 0
    assert_same_weights(selector_run / "selector", out / "selector")
    assert matrices(selector_run) == matrices(out)


@pytest.mark.parametrize("resume", [False, True])
def test_a_selector_stopped_before_its_first_checkpoint_reruns_in_place(selector_run, tmp_path, resume):
    out = tmp_path / "sel"
    argv = ["train-selector", "--config", "tiny", "--output-dir", str(out), *FAST]
    with interrupt_after_checkpoint(0):  # stopped before its first checkpoint
        assert main(argv) == 130
    assert (out / "config.yaml").is_file() and not list(out.rglob("checkpoints/last"))
    assert main(argv + ["--resume"] * resume) == 0
    assert_same_weights(selector_run / "selector", out / "selector")
    assert matrices(selector_run) == matrices(out)


def test_resuming_with_another_config_is_refused_untouched(selector_run, capsys):
    before = {p: p.stat().st_mtime_ns for p in selector_run.rglob("*")}
    argv = ["train-selector", "--config", "tiny", "--output-dir", str(selector_run), "--resume", *FAST]
    assert main([*argv, "selector.train.epochs=3"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("l2c: error: cannot resume") and "selector.train.epochs" in err and "\n" not in err
    assert {p: p.stat().st_mtime_ns for p in selector_run.rglob("*")} == before
