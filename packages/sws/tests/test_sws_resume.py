"""`sws extract --resume` and `sws train --resume` continue an interrupted run exactly (in process)."""

from __future__ import annotations

from learngene_core.testing import assert_resume_is_exact
from sws.cli import main

SHORT = ["train.max_steps=6", "train.checkpoint_every=2", "train.eval_every=3", "train.progress=false"]


def test_extract_interrupted_after_a_checkpoint_resumes_exactly(tmp_path, ancestry_dir):
    argv = ["extract", "--config", "tiny", f"ancestry.run={ancestry_dir}", *SHORT]
    assert_resume_is_exact(main, argv, tmp_path, [3, 4, 5, 6])  # the learngene and aux-run/ files too


def test_train_interrupted_after_a_checkpoint_resumes_exactly(tmp_path, learngene_dir):
    argv = [
        "train",
        "--init",
        f"learngene:{learngene_dir}",
        "--depth",
        "2",
        "--config",
        "tiny-descendant",
        *SHORT,
    ]
    assert_resume_is_exact(main, argv, tmp_path, [3, 4, 5, 6])
