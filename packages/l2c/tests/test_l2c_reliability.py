"""Bad input through the installed `l2c` console script, in a subprocess: one line, exit code 2, nothing written."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

from learngene_core.testing import (
    HostilePickle,
    assert_one_error_line,
    copy_with,
    one_error_line,
    run_named_console_cases,
)

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
    assert_one_error_line(result.returncode, result.stderr, "l2c", culprit)
    assert not (tmp_path / "out").exists() and not any((tmp_path / "empty").iterdir())


def test_help_lists_the_verbs():
    result = l2c("--help")
    assert result.returncode == 0
    for verb in ("run", "train-selector", "train-experts", "eval"):
        assert verb in result.stdout


# ------------------------------------------------------------------------ the issue-17 categories, in one interpreter


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    from l2c.cli import main

    tmp = tmp_path_factory.mktemp("bad")
    (tmp / "a-file").write_text("x")
    (tmp / "garbage.safetensors").write_bytes(b"\x80\x02garbage" * 10)
    torch.save({"w": HostilePickle()}, tmp / "evil.pt")
    stopped = tmp / "stopped"  # a run stopped by a NaN loss: config.yaml and split.json written
    assert (
        main(["train-selector", "--config", "tiny", "--output-dir", str(stopped), "selector.train.lr=1e30"])
        == 2
    )
    runs = {
        name: copy_with(stopped, tmp / name, files)
        for name, files in {
            "latin-split": {"split.json": b"\xe9"},
            "truncated-split": {"split.json": b'{"order": [1,'},
            "latin-config": {"config.yaml": b"seed: caf\xe9\n"},
        }.items()
    }
    selector = ["train-selector", "--config", "tiny", "--output-dir"]
    cases = {
        "output dir is a file": ([*selector, str(tmp / "a-file")], "a-file is a file"),
        "non-UTF-8 split.json": (["train-experts", "--run", str(runs["latin-split"])], "split.json is not UTF-8"),
        "truncated split.json": (["train-experts", "--run", str(runs["truncated-split"])], "split.json is not valid JSON"),
        "non-UTF-8 run config": (["train-experts", "--run", str(runs["latin-config"])], "config.yaml: not UTF-8"),
        "corrupt backbone weights": ([*selector, str(tmp / "s1"), f"model.checkpoint={tmp / 'garbage.safetensors'}"], "garbage.safetensors"),
        "hostile .pt backbone": ([*selector, str(tmp / "s4"), f"model.checkpoint={tmp / 'evil.pt'}"], "refused"),
        "lr=.nan": ([*selector, str(tmp / "s2"), "selector.train.lr=.nan"], "'selector.train.lr' must be a finite number"),
        "NaN loss": ([*selector, str(tmp / "s3"), "selector.train.lr=1e30"], "loss became nan"),
        "images of another size than the backbone's": ([*selector, str(tmp / "s5"), "data.image_size=32"], "tiny-vit-synthetic64.safetensors was pre-trained on 16x16 images (17 position embeddings) but data.image_size gives 32x32 (65): set data.image_size=16"),
    }  # fmt: skip
    results = run_named_console_cases("l2c.cli", cases)
    assert not (tmp / "s5").exists()  # refused before anything is written
    return results


@pytest.mark.parametrize(
    "case",
    [
        "output dir is a file",
        "non-UTF-8 split.json",
        "truncated split.json",
        "non-UTF-8 run config",
        "corrupt backbone weights",
        "hostile .pt backbone",
        "lr=.nan",
        "NaN loss",
        "images of another size than the backbone's",
    ],
)
def test_bad_input_is_one_error_line_with_exit_code_2_in_one_interpreter(results, case):
    result, culprit = results[case]
    one_error_line(result, "l2c", culprit)
