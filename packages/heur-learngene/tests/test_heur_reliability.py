"""Bad input through the console script: one `heur-learngene: error:` line naming the culprit, exit code 2,
nothing written."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest


def cli(*argv) -> tuple[int, str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    script = Path(sys.executable).with_name("heur-learngene")
    done = subprocess.run([str(script), *map(str, argv)], capture_output=True, text=True, env=env)
    return done.returncode, done.stderr


def assert_one_line(code: int, err: str, *culprits: str) -> None:
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("heur-learngene: error: "), err
    for culprit in culprits:
        assert culprit in lines[0], lines[0]


def test_overlapping_stream_classes(tmp_path):
    code, err = cli(
        "collective", "--config", "tiny", "--output-dir", tmp_path / "o", "stream.classes=[0,1,2,1]"
    )
    assert_one_line(code, err, "repeats class 1")
    assert not (tmp_path / "o").exists()


def test_layer_index_outside_the_ancestry(collective_dir, tmp_path):
    code, err = cli("choose", "--run", collective_dir, "--layers", "3,13", "--output-dir", tmp_path / "o")
    assert_one_line(code, err, "layer 13", "0..12")
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("k", [14, 0])
def test_k_outside_the_layer_count(collective_dir, tmp_path, k):
    code, err = cli("choose", "--run", collective_dir, "--output-dir", tmp_path / "o", f"method.k={k}")
    assert_one_line(code, err, "k")
    assert not (tmp_path / "o").exists()


def test_descendant_config_of_another_architecture(collective_dir, tmp_path):
    code, err = cli("train", "--learngene", collective_dir / "learngene", "--config", "tiny-descendant",
                    "--output-dir", tmp_path / "o", "model.name=vit_learngene")  # fmt: skip
    assert_one_line(code, err, "architecture mismatch", "learngene_vgg")
    code, err = cli("train", "--learngene", collective_dir / "learngene", "--config", "tiny-descendant",
                    "--output-dir", tmp_path / "o", "model.name=learngene_vgg",
                    "model.kwargs.widths=[8,8,8,8,8,8,8,8,8,8,8,8,8]")  # fmt: skip
    assert_one_line(code, err, "architecture mismatch", "features.")
    assert not (tmp_path / "o").exists()


def test_existing_learngene_output_is_left_untouched(collective_dir, tmp_path):
    out = tmp_path / "taken"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    code, err = cli("choose", "--run", collective_dir, "--output-dir", out)
    assert_one_line(code, err, str(out))
    assert [p.name for p in out.iterdir()] == ["keep.txt"]
