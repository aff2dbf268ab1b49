"""`condense --resume` continues meta-training exactly: stopped between two checkpoints of the pseudo-descendant, the
resumed run ends with the weights, meta-network, transfer weights and manifest of a run that went through."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from auto_learngene.cli import main
from learngene_core.testing import (
    assert_one_error_line,
    assert_resume_is_exact,
    interrupt_after_checkpoint,
    interrupt_after_first_step,
    recorded_steps,
)


def outputs(run: Path) -> tuple[str, str]:
    return (run / "weights.json").read_text(), (run / "learngene" / "manifest.json").read_text()


def test_stopped_mid_meta_training_resumes_to_the_same_learngene_and_resumed_again_trains_nothing(
    tmp_path, ancestry_dir, capsys
):
    argv = ["condense", "--config", "tiny", f"ancestry.run={ancestry_dir}", "train.epochs=4"]
    # 2 steps an epoch, a checkpoint an epoch: stopped after step 4 of 8, the meta-network half trained
    assert_resume_is_exact(main, argv, tmp_path, stop=interrupt_after_checkpoint(2))
    assert outputs(tmp_path / "reference") == outputs(tmp_path / "run")
    assert len(json.loads(outputs(tmp_path / "run")[1])["meta_losses"]) == 8
    with recorded_steps() as steps:
        assert main([*argv, "--output-dir", str(tmp_path / "run"), "--resume"]) == 0
    assert steps == [] and outputs(tmp_path / "reference") == outputs(tmp_path / "run")
    # another config: one line naming the key, the run as it was
    before = {p: p.read_bytes() for p in (tmp_path / "run").rglob("*") if p.is_file()}
    capsys.readouterr()
    assert main([*argv, "method.meta_lr=0.5", "--output-dir", str(tmp_path / "run"), "--resume"]) == 2
    assert_one_error_line(2, capsys.readouterr().err, "auto-learngene", "method.meta_lr", "config differs")
    assert {p: p.read_bytes() for p in (tmp_path / "run").rglob("*") if p.is_file()} == before


@pytest.mark.parametrize("again", [[], ["--resume"]])
def test_stopped_before_its_first_checkpoint_reruns_in_place_with_or_without_resume(
    tmp_path, ancestry_dir, again
):
    argv = ["condense", "--config", "tiny", f"ancestry.run={ancestry_dir}", "train.epochs=1"]
    run = tmp_path / "run"
    with interrupt_after_first_step():
        assert main([*argv, "--output-dir", str(run)]) == 130
    assert main([*argv, "--output-dir", str(run), *again]) == 0
    assert (run / "learngene" / "manifest.json").is_file()


def test_resuming_a_condense_written_before_it_could_resume_is_one_line_saying_why(
    ancestry_dir, tmp_path, capsys
):
    """Such runs have pseudo-descendant/ but no top-level config.yaml (and no meta-network in the checkpoints)."""
    run = tmp_path / "old"
    (run / "pseudo-descendant").mkdir(parents=True)
    argv = [
        "condense",
        "--config",
        "tiny",
        "--output-dir",
        str(run),
        f"ancestry.run={ancestry_dir}",
        "--resume",
    ]
    assert main(argv) == 2
    assert_one_error_line(
        2, capsys.readouterr().err, "auto-learngene", "written before this command could resume"
    )
    assert [p.name for p in run.iterdir()] == ["pseudo-descendant"]
