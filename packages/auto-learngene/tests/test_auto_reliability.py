"""Bad input through the console script: one `auto-learngene: error:` line, exit code 2, nothing written."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def cli(*argv) -> tuple[int, str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    script = Path(sys.executable).with_name("auto-learngene")
    done = subprocess.run([str(script), *map(str, argv)], capture_output=True, text=True, env=env)
    return done.returncode, done.stderr


def assert_one_line(code: int, err: str, *culprits: str) -> None:
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("auto-learngene: error: "), err
    for culprit in culprits:
        assert culprit in lines[0], lines[0]


def test_k_larger_than_the_ancestry(ancestry_dir, tmp_path):
    code, err = cli("condense", "--config", "tiny", "--output-dir", tmp_path / "o", f"ancestry.run={ancestry_dir}",
                    "method.k=4")  # fmt: skip
    assert_one_line(code, err, "method.k=4", "3 layers")
    assert not (tmp_path / "o").exists()


def test_descendant_of_another_architecture(condensed_dir, tmp_path):
    code, err = cli("train", "--learngene", condensed_dir / "learngene", "--config", "tiny-descendant",
                    "--output-dir", tmp_path / "o", "model.name=learngene_vgg")  # fmt: skip
    assert_one_line(code, err, "architecture mismatch", "vit_tiny_patch16_224")
    assert not (tmp_path / "o").exists()


def test_learngene_layer_outside_a_shallower_descendant(condensed_dir, tmp_path):
    code, err = cli("train", "--learngene", condensed_dir / "learngene", "--config", "tiny-descendant",
                    "--output-dir", tmp_path / "o", "model.name=vit_tiny_patch16_224",
                    "model.kwargs.depth=1", "placement=same")  # fmt: skip
    assert_one_line(code, err, "outside the descendant's layers 0..0")
    assert not (tmp_path / "o").exists()


def test_descendant_trains_from_the_learngene(condensed_dir, tmp_path):
    out = tmp_path / "d"
    code, err = cli("train", "--learngene", condensed_dir / "learngene", "--config", "tiny-descendant",
                    "--output-dir", out, "train.epochs=3")  # fmt: skip
    assert code == 0, err
    assert (out / "final" / "model.safetensors").is_file()
