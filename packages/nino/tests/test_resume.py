"""`--resume` of `nino metatrain` continues a stopped run from its last checkpoint, bitwise: the weights, kept
checkpoints and metrics equal an uninterrupted run's, and the resumed run makes only the steps it had not made."""

from __future__ import annotations

import contextlib
import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from torch.optim.optimizer import register_optimizer_step_post_hook

from learngene_core.testing import (
    assert_one_error_line,
    assert_same_safetensors,
    interrupt_after_first_step,
    interrupt_after_steps,
)
from nino.cli import main

# 12 steps, a checkpoint every 6, a log every 4: a stop after step 9 resumes from step 6 with the losses of
# steps 5-6 not logged yet, AdamW's moments, the sampler's RNG and the LR schedule all part way
OVERRIDES = ["steps=12", "log_every=4", "checkpoint_every=6", "keep_checkpoints=true", "progress=false"]


def metatrain(data: Path, out: Path, *extra: str) -> int:
    """`nino metatrain` of the tiny preset with OVERRIDES; `extra`: flags, then more overrides."""
    argv = ["metatrain", "--config", "metatrain-tiny", "--data", str(data), "--output", str(out)]
    return main([*argv, *extra, *OVERRIDES])


@contextlib.contextmanager
def steps_made() -> Iterator[list[int]]:
    """Counts the optimizer steps made inside the block (one entry per step)."""
    steps: list[int] = []
    handle = register_optimizer_step_post_hook(lambda *_: steps.append(1))
    try:
        yield steps
    finally:
        handle.remove()


def files_of(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def metrics_without_times(run: Path) -> list[dict]:
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in r.items() if k != "seconds"} for r in records]


def assert_same_metatraining(reference: Path, run: Path) -> None:
    """Same weights in every checkpoint (nino.pt, nino-step*.pt, checkpoints/last) and the same metrics."""
    assert_same_safetensors(reference, run)
    names = sorted(p.name for p in reference.glob("*.pt"))
    assert names == sorted(p.name for p in run.glob("*.pt")) and "nino.pt" in names
    for name in names:
        expected = torch.load(reference / name, weights_only=True)["state_dict"]
        found = torch.load(run / name, weights_only=True)["state_dict"]
        assert all(torch.equal(expected[k], found[k]) for k in expected), name
    assert metrics_without_times(run) == metrics_without_times(reference)


@pytest.fixture(scope="module")
def reference(tmp_path_factory, trajectory_dir) -> Path:
    """The uninterrupted run."""
    out = tmp_path_factory.mktemp("metatrain") / "reference"
    assert metatrain(trajectory_dir, out) == 0
    return out


def test_metatrain_resumed_mid_run_equals_an_uninterrupted_run(capsys, tmp_path, trajectory_dir, reference):
    run = tmp_path / "run"
    with interrupt_after_steps(9):
        assert metatrain(trajectory_dir, run) == 130
    assert "--resume" in capsys.readouterr().err
    with steps_made() as steps:
        assert metatrain(trajectory_dir, run, "--resume") == 0
    assert len(steps) == 12 - 6  # from the checkpoint of step 6
    assert_same_metatraining(reference, run)
    records = metrics_without_times(run)
    assert [r["step"] for r in records] == [4, 8, 12]  # nothing logged twice


def test_metatrain_resume_of_another_config_or_data_is_one_line_and_changes_nothing(
    capsys, tmp_path, trajectory_dir
):
    run = tmp_path / "run"
    with interrupt_after_steps(7):
        assert metatrain(trajectory_dir, run) == 130
    capsys.readouterr()
    before = files_of(run)
    assert metatrain(trajectory_dir, run, "--resume", "lr=1e-3") == 2
    assert_one_error_line(2, capsys.readouterr().err, "nino", "lr", "same config")
    other = tmp_path / "other-data"
    shutil.copytree(trajectory_dir, other)
    assert metatrain(other, run, "--resume") == 2
    assert_one_error_line(2, capsys.readouterr().err, "nino", "other-data", "same command")
    assert files_of(run) == before


def test_metatrain_stopped_before_its_first_checkpoint_reruns_in_place(tmp_path, trajectory_dir, reference):
    run = tmp_path / "run"
    with interrupt_after_first_step():
        assert metatrain(trajectory_dir, run) == 130
    assert not (run / "checkpoints" / "last").exists()
    assert metatrain(trajectory_dir, run) == 2  # a plain rerun is refused; --resume starts it over
    with steps_made() as steps:
        assert metatrain(trajectory_dir, run, "--resume") == 0
    assert len(steps) == 12
    assert_same_metatraining(reference, run)


def test_resuming_a_finished_metatraining_trains_nothing(tmp_path, trajectory_dir, reference):
    run = tmp_path / "run"
    assert metatrain(trajectory_dir, run) == 0
    weights = {name: data for name, data in files_of(run).items() if name.endswith((".pt", ".safetensors"))}
    with steps_made() as steps:
        assert metatrain(trajectory_dir, run, "--resume") == 0
    assert steps == []
    assert weights == {n: d for n, d in files_of(run).items() if n.endswith((".pt", ".safetensors"))}
    assert_same_metatraining(reference, run)
