"""`--resume` of `nino metatrain` and `nino train` continues a stopped run from its last checkpoint, bitwise: the
weights, checkpoints, metrics (and train's summary) equal an uninterrupted run's, and the resumed run makes only
the steps it had not made."""

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


# ---------------------------------------------------------------------------------------------- nino train


def train(out: Path, *extra: str) -> int:
    """`nino train` of train-tiny (mlp-digits, 120 steps, an evaluation every 10); `extra`: flags, then overrides."""
    return main(["train", "--config", "train-tiny", "--output", str(out), *extra])


def summary_without_times(run: Path) -> dict:
    summary = json.loads((run / "summary.json").read_text())
    for result in summary.values():
        for key in [k for k in result if k.endswith("seconds")]:
            del result[key]
        result["nowcasts"] = [
            {k: v for k, v in r.items() if not k.endswith("seconds")} for r in result["nowcasts"]
        ]
    return summary


def assert_same_training(reference: Path, run: Path) -> None:
    """Same weights in checkpoints/last, the same metrics.jsonl files and the same summary (times aside)."""
    assert_same_safetensors(reference, run)
    logs = sorted(p.relative_to(reference) for p in reference.rglob("metrics.jsonl"))
    assert logs and logs == sorted(p.relative_to(run) for p in run.rglob("metrics.jsonl"))
    for name in logs:
        assert (run / name).read_text() == (reference / name).read_text(), name
    assert summary_without_times(run) == summary_without_times(reference)


def test_nino_train_resumed_inside_a_delayed_check_equals_an_uninterrupted_run(tmp_path, nino_ckpt):
    # the tiny NiNo nowcasts every 50 steps, each jump checked 5 steps later against a shadow AdamW run:
    # a checkpoint at step 52 holds the snapshots, the jump history and the open check's shadow
    argv = ["--optimizer", "nino", "--ckpt", str(nino_ckpt), "checkpoint_every=26"]
    assert train(tmp_path / "reference", *argv) == 0
    jumps = summary_without_times(tmp_path / "reference")["nino"]["nowcasts"]
    assert [(r["step"], r["checked_at"]) for r in jumps][:1] == [(50, 55)]
    with interrupt_after_steps(49 + 1 + 2 * 5 + 2):  # base steps: 49, the shadow's at 50, two per call to 55
        assert train(tmp_path / "run", *argv) == 130
    assert json.loads((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()[-1])["step"] == 50
    assert train(tmp_path / "run", "--resume", *argv) == 0
    assert_same_training(tmp_path / "reference", tmp_path / "run")


def test_train_compare_resumed_in_its_second_run(capsys, tmp_path, nino_ckpt):
    # adamw finished (120 steps); nino stopped at step 45: its checkpoint at step 40 holds 4 of a period's
    # 5 snapshots, and AdamW's moments
    argv = ["--compare", "--ckpt", str(nino_ckpt), "checkpoint_every=40"]
    assert train(tmp_path / "reference", *argv) == 0
    run = tmp_path / "run"
    with interrupt_after_steps(120 + 45):
        assert train(run, *argv) == 130
    capsys.readouterr()
    before = files_of(run)
    assert train(run, "--resume", *argv, "lr=1e-2") == 2
    assert_one_error_line(2, capsys.readouterr().err, "nino", "lr", "same config")
    assert train(run, "--resume", "--optimizer", "nino", "--ckpt", str(nino_ckpt), "checkpoint_every=40") == 2
    assert_one_error_line(2, capsys.readouterr().err, "nino", "--compare", "same command")
    assert files_of(run) == before
    with steps_made() as steps:
        assert train(run, "--resume", *argv) == 0
    jumps = summary_without_times(tmp_path / "reference")["nino"]["nowcasts"]
    shadow_steps = sum(r["checked_at"] - r["step"] for r in jumps)  # one per call inside a check's window
    assert jumps and all(r["step"] > 45 for r in jumps)
    assert len(steps) == (120 - 40) + shadow_steps  # adamw trains nothing; nino from step 40
    assert_same_training(tmp_path / "reference", run)


def test_adamw_train_stopped_before_its_first_checkpoint_reruns_in_place(tmp_path):
    assert train(tmp_path / "reference", "--optimizer", "adamw") == 0
    with interrupt_after_first_step():
        assert train(tmp_path / "run", "--optimizer", "adamw") == 130
    assert (tmp_path / "run" / "metrics.jsonl").is_file() and not (tmp_path / "run" / "checkpoints").exists()
    assert train(tmp_path / "run", "--optimizer", "adamw", "--resume") == 0
    assert_same_training(tmp_path / "reference", tmp_path / "run")
    files = files_of(tmp_path / "run")
    with steps_made() as steps:  # a finished run resumed trains nothing
        assert train(tmp_path / "run", "--optimizer", "adamw", "--resume") == 0
    assert steps == []
    assert {n: d for n, d in files_of(tmp_path / "run").items() if n.endswith("safetensors")} == {
        n: d for n, d in files.items() if n.endswith("safetensors")
    }
    assert_same_training(tmp_path / "reference", tmp_path / "run")


def test_a_dropout_lm_resumed_mid_run_continues_its_rng(tmp_path):
    # GPT-2's dropout draws from the global torch RNG: the checkpoint of step 5 must carry it
    argv = ["--optimizer", "adamw", "task=gpt2-tiny", "steps=12", "eval_every=4", "checkpoint_every=5"]
    assert train(tmp_path / "reference", *argv) == 0
    with interrupt_after_steps(8):
        assert train(tmp_path / "run", *argv) == 130
    with steps_made() as steps:
        assert train(tmp_path / "run", "--resume", *argv) == 0
    assert len(steps) == 12 - 5
    assert_same_training(tmp_path / "reference", tmp_path / "run")


def test_resuming_a_finished_run_whose_metrics_log_was_emptied_is_one_line(tmp_path, capsys):
    assert train(tmp_path / "run", "--optimizer", "adamw") == 0
    (tmp_path / "run" / "metrics.jsonl").write_text('{"step": 0, "spl')  # only a torn line: was an IndexError
    capsys.readouterr()
    assert train(tmp_path / "run", "--optimizer", "adamw", "--resume") == 2
    warning, error = capsys.readouterr().err.splitlines()  # the torn line is dropped with its warning
    assert warning.startswith(f"warning: {tmp_path / 'run' / 'metrics.jsonl'}: dropped its torn last line")
    assert error == (
        f"nino: error: {tmp_path / 'run' / 'metrics.jsonl'} holds no validation records (emptied or damaged?); "
        "run again into a new --output"
    )
