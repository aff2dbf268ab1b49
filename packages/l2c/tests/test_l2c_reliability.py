"""Bad input through the installed `l2c` console script, in a subprocess: one line, exit code 2, nothing written."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def l2c(*argv) -> subprocess.CompletedProcess:
    command = [sys.executable, "-c", "from l2c.cli import main; raise SystemExit(main())", *map(str, argv)]
    return subprocess.run(command, capture_output=True, text=True, env=ENV, timeout=300)


@pytest.mark.parametrize(
    ("argv", "culprit"),
    [
        (
            ["run", "--config", "tiny", "scenario.class_order=[3,1,2,3,4,5,6,7,8,9]"],
            "class order repeats class 3",
        ),
        (
            ["train-selector", "--config", "tiny", "data.name=imagenet-r", "data.path={empty}"],
            "no images in <wnid>/",
        ),
        (["eval", "--run", "{empty}", "--topk", "2"], "not an l2c run directory"),
    ],
)
def test_bad_input_is_one_line_and_exit_code_2(tmp_path, argv, culprit):
    (tmp_path / "empty").mkdir()
    argv = [a.format(empty=tmp_path / "empty") for a in argv]
    if argv[0] in ("run", "train-selector"):
        argv += ["--output-dir", tmp_path / "out"]
    result = l2c(*argv)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("l2c: error: ") and culprit in lines[0], result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "out").exists() and not any((tmp_path / "empty").iterdir())


def test_help_lists_the_verbs():
    result = l2c("--help")
    assert result.returncode == 0
    for verb in ("run", "train-selector", "train-experts", "eval"):
        assert verb in result.stdout
