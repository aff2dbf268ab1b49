"""`experiment.check_new_output_dir`: a command that trains several runs under one output dir (heur collective,
auto condense) starts over in place when all it left is its first run, stopped before a checkpoint."""

from __future__ import annotations

import pytest

from learngene_core.errors import CheckpointError
from learngene_core.experiment import check_new_output_dir

FIRST = "collective/task-00"


def _stopped_first_run(root):
    run = root / FIRST
    run.mkdir(parents=True)
    (run / "config.yaml").write_text("seed: 0\n")
    (run / "metrics.jsonl").write_text('{"step": 1, "split": "train", "loss": 2.3}\n')
    (run / "checkpoints").mkdir()
    (run / "checkpoints" / ".last.ab12.tmp").mkdir()  # a killed save: no checkpoint
    return run


def test_absent_empty_or_only_a_stopped_first_run_is_accepted(tmp_path):
    check_new_output_dir(tmp_path / "absent", FIRST)
    (tmp_path / "empty").mkdir()
    check_new_output_dir(tmp_path / "empty", FIRST)
    _stopped_first_run(tmp_path / "stopped")
    check_new_output_dir(tmp_path / "stopped", FIRST)


@pytest.mark.parametrize(
    ("extra", "why"),
    [
        ("collective/task-00/final/model.safetensors", "the first run finished"),
        ("collective/task-01/config.yaml", "a second run started"),
        ("stream.jsonl", "a task's record was written"),
        ("notes.txt", "a user's file"),
    ],
)
def test_anything_more_is_refused_as_not_empty(tmp_path, extra, why):
    _stopped_first_run(tmp_path)
    (tmp_path / extra).parent.mkdir(parents=True, exist_ok=True)
    (tmp_path / extra).write_text("x")
    with pytest.raises(CheckpointError, match=f"output dir {tmp_path} is not empty"):
        check_new_output_dir(tmp_path, FIRST)


def test_a_file_is_refused_as_a_file(tmp_path):
    (tmp_path / "a-file").write_text("x")
    with pytest.raises(CheckpointError, match="a-file is a file, not a directory"):
        check_new_output_dir(tmp_path / "a-file", FIRST)


def test_with_a_config_its_own_config_yaml_is_accepted_and_the_refusal_points_at_resume(tmp_path):
    from learngene_core.config import TrainConfig, save_config

    _stopped_first_run(tmp_path)
    save_config(TrainConfig(), tmp_path / "config.yaml")
    check_new_output_dir(tmp_path, FIRST, TrainConfig())
    with pytest.raises(CheckpointError, match="not empty; choose another"):
        check_new_output_dir(tmp_path, FIRST)  # a config.yaml the command does not write
    (tmp_path / "config.yaml").write_text("notes: mine\n")
    with pytest.raises(CheckpointError, match="not empty; pass --resume to continue its run"):
        check_new_output_dir(tmp_path, FIRST, TrainConfig())  # a user's own file is kept
