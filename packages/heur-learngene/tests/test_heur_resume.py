"""`collective --resume` continues the stream exactly: stopped between two tasks or inside one, the resumed run ends
with the weights, stream.jsonl and learngene of a run that went through; another config is refused."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from heur_learngene.cli import main
from learngene_core import experiment
from learngene_core.testing import (
    assert_one_error_line,
    assert_resume_is_exact,
    assert_same_safetensors,
    interrupt_after_checkpoint,
    interrupt_after_first_step,
    recorded_steps,
)

# 3 tasks of 2 epochs, one checkpoint an epoch
ARGV = ["collective", "--config", "tiny", "train.epochs=2"]


@contextlib.contextmanager
def stop_before_task(task: int) -> Iterator[None]:
    """A Ctrl-C as task `task` starts: the tasks before it are recorded, and only their files carry the state."""
    original, calls = experiment.prepare_run, []

    def prepare_or_stop(cfg):
        calls.append(cfg)
        if len(calls) > task:
            raise KeyboardInterrupt
        return original(cfg)

    experiment.prepare_run = prepare_or_stop
    try:
        yield
    finally:
        experiment.prepare_run = original


def outputs(run: Path) -> tuple[str, dict]:
    """stream.jsonl and the learngene manifest (without the path of the run it came from)."""
    manifest = json.loads((run / "learngene" / "manifest.json").read_text())
    manifest.pop("ancestry_run")
    return (run / "stream.jsonl").read_text(), manifest


def test_stopped_between_tasks_resumes_to_the_same_run_and_resumed_again_trains_nothing(tmp_path, capsys):
    assert_resume_is_exact(main, ARGV, tmp_path, stop=stop_before_task(2))
    assert len((tmp_path / "run" / "stream.jsonl").read_text().splitlines()) == 3
    assert outputs(tmp_path / "reference") == outputs(tmp_path / "run")
    assert "continuing the stream after task 1" in capsys.readouterr().out
    with recorded_steps() as steps:
        assert main([*ARGV, "--output-dir", str(tmp_path / "run"), "--resume"]) == 0
    assert steps == [] and outputs(tmp_path / "reference") == outputs(tmp_path / "run")


def test_stopped_inside_a_task_resumes_to_the_same_run(tmp_path):
    # the 3rd checkpoint is task 1's first: its layer tracker's sums come back from it
    assert_resume_is_exact(main, ARGV, tmp_path, stop=interrupt_after_checkpoint(3))
    assert outputs(tmp_path / "reference") == outputs(tmp_path / "run")


def test_resume_with_another_config_is_one_line_naming_the_key_and_touches_nothing(tmp_path, capsys):
    run = tmp_path / "run"
    with interrupt_after_checkpoint(1):
        assert main([*ARGV, "--output-dir", str(run)]) == 130
    before = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    capsys.readouterr()
    assert main([*ARGV, "method.k=2", "--output-dir", str(run), "--resume"]) == 2
    assert_one_error_line(2, capsys.readouterr().err, "heur-learngene", "method.k", "config differs")
    assert {p: p.read_bytes() for p in run.rglob("*") if p.is_file()} == before
    assert main([*ARGV, "--output-dir", str(run)]) == 2  # no --resume: not started over either
    assert "pass --resume" in capsys.readouterr().err


@pytest.mark.parametrize("again", [[], ["--resume"]])
def test_stopped_before_its_first_checkpoint_reruns_in_place_with_or_without_resume(tmp_path, again):
    run = tmp_path / "run"
    with interrupt_after_first_step():
        assert main([*ARGV, "--output-dir", str(run)]) == 130
    assert main([*ARGV, "--output-dir", str(run), *again]) == 0
    assert len((run / "stream.jsonl").read_text().splitlines()) == 3


# a collective run killed (SIGKILL, no cleanup) halfway through writing record `task` of stream.jsonl
KILL_WHILE_APPENDING = """
import os, signal, sys
from heur_learngene import collective
from heur_learngene.cli import main

task, appended = int(sys.argv[1]), []

class Torn:
    def __init__(self, handle):
        self.handle = handle
    def __enter__(self):
        return self
    def __exit__(self, *exc):
        self.handle.close()
    def write(self, text):
        appended.append(text)
        if len(appended) <= task:
            return self.handle.write(text)
        self.handle.write(text[: len(text) // 2])
        self.handle.flush()
        os.kill(os.getpid(), signal.SIGKILL)

def torn_open(path, mode="r", *args, **kwargs):
    handle = open(path, mode, *args, **kwargs)
    return Torn(handle) if str(path).endswith("stream.jsonl") and "a" in mode else handle

collective.open = torn_open
main(sys.argv[2:])
"""


@pytest.mark.parametrize("task", [0, 1])
def test_a_record_torn_by_kill_9_is_dropped_and_its_task_recorded_again(tmp_path, capsys, task):
    """The task whose record was torn is already trained: --resume finishes it from its final checkpoint
    (nothing retrained), records it again and goes on; the run ends as one that went through, bit for bit."""
    with recorded_steps() as all_steps:
        assert main([*ARGV, "--output-dir", str(tmp_path / "reference")]) == 0
    run = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    killed = subprocess.run([sys.executable, "-c", KILL_WHILE_APPENDING, str(task), *ARGV, "--output-dir", str(run)],
                            env=env, capture_output=True, text=True)  # fmt: skip
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    torn = (run / "stream.jsonl").read_bytes()
    assert not torn.endswith(b"\n") and torn.count(b"\n") == task
    capsys.readouterr()
    with recorded_steps() as steps:
        assert main([*ARGV, "--output-dir", str(run), "--resume"]) == 0
    err = capsys.readouterr().err
    assert f"{run / 'stream.jsonl'}: dropped its torn last line" in err
    assert len(steps) == len(all_steps) // 3 * (2 - task)  # only the tasks after the torn one train
    assert outputs(tmp_path / "reference") == outputs(run)
    assert_same_safetensors(tmp_path / "reference", run)


def test_a_broken_line_inside_stream_jsonl_is_one_line_naming_file_and_line(tmp_path, capsys):
    run = tmp_path / "run"
    with stop_before_task(2):
        assert main([*ARGV, "--output-dir", str(run)]) == 130
    stream = run / "stream.jsonl"
    lines = stream.read_text().splitlines(keepends=True)
    stream.write_text(lines[0][:10] + "\n" + lines[1])
    before = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    capsys.readouterr()
    assert main([*ARGV, "--output-dir", str(run), "--resume"]) == 2
    assert_one_error_line(2, capsys.readouterr().err, "heur-learngene", f"{stream}:1: not a JSON record")
    assert {p: p.read_bytes() for p in run.rglob("*") if p.is_file()} == before


def test_resuming_a_run_written_before_collective_could_resume_is_one_line_saying_why(tmp_path, capsys):
    """Such runs have collective/task-00/ but no top-level config.yaml (and no widening-generator state)."""
    run = tmp_path / "old"
    (run / "collective" / "task-00").mkdir(parents=True)
    (run / "stream.jsonl").write_text("")
    assert main([*ARGV, "--output-dir", str(run), "--resume"]) == 2
    assert_one_error_line(2, capsys.readouterr().err, "heur-learngene", "written before this command could resume",
                          "run it again into a new --output-dir")  # fmt: skip
    assert sorted(p.name for p in run.rglob("*")) == ["collective", "stream.jsonl", "task-00"]
