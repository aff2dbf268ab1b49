"""Bad input through the console script: one `auto-learngene: error:` line, exit code 2, nothing written.

The first cases run the installed script, one process each; the table of the issue-17 categories (file system,
side files, shape mismatches, hostile/corrupt files, non-finite values, unknown keys) runs in one interpreter.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from auto_learngene.cli import main
from learngene_core.testing import (
    assert_one_error_line,
    assert_probe_changes_nothing,
    copy_with,
    one_error_line,
    run_named_console_cases,
)


def cli(*argv) -> tuple[int, str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    script = Path(sys.executable).with_name("auto-learngene")
    done = subprocess.run([str(script), *map(str, argv)], capture_output=True, text=True, env=env)
    return done.returncode, done.stderr


def assert_one_line(code: int, err: str, *culprits: str) -> None:
    assert_one_error_line(code, err, "auto-learngene", *culprits)


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


# ------------------------------------------------------------------------ the issue-17 categories, in one interpreter


@pytest.fixture(scope="module")
def results(tmp_path_factory, ancestry_dir, condensed_dir):
    tmp = tmp_path_factory.mktemp("bad")
    (tmp / "a-file").write_text("x")
    latin = copy_with(ancestry_dir, tmp / "latin", {"config.yaml": b"model:\n  name: caf\xe9\n"})
    no_shape = copy_with(ancestry_dir, tmp / "no-shape", {"final/metadata.json": b"{}"})
    garbage = copy_with(ancestry_dir, tmp / "garbage", {"final/model.safetensors": b"\x80\x02garbage" * 10})
    truncated = copy_with(condensed_dir / "learngene", tmp / "truncated", {"manifest.json": b'{"meth'})
    quick = ["train.max_steps=2", "train.progress=false"]

    def condense(out: str, ancestry: Path = ancestry_dir, *overrides: str) -> list[str]:
        return [
            "condense",
            "--config",
            "tiny",
            "--output-dir",
            str(tmp / out),
            f"ancestry.run={ancestry}",
            *quick,
            *overrides,
        ]

    cases = {
        "output dir is a file": (condense("a-file"), "a-file is a file"),
        "non-UTF-8 ancestry config": (condense("o1", latin), "latin/config.yaml: not UTF-8"),
        "ancestry metadata without input_shape": (condense("o2", no_shape), "records no input_shape"),
        "corrupt ancestry weights": (condense("o3", garbage), "model.safetensors"),
        "ancestry trained on other images": (condense("o4", ancestry_dir, "data.image_size=32"), "the ancestry (vit_tiny_patch16_224 from"),
        "meta_lr=.nan": (condense("o5", ancestry_dir, "method.meta_lr=.nan"), "'method.meta_lr' must be a finite number"),
        "unknown key": (condense("o6", ancestry_dir, "method.bogus=1"), "'method.bogus'"),
        "NaN loss": (condense("o7", ancestry_dir, "train.lr=1e30"), "loss became nan at step 2 (epoch 1); the last checkpoint is kept; try a lower train.lr"),
        "meta-training diverges": (condense("o9", ancestry_dir, "method.meta_lr=1e8"), "try a lower method.meta_lr"),
        "truncated learngene manifest": (["train", "--learngene", str(truncated), "--config", "tiny-descendant", "--output-dir", str(tmp / "o8")], "manifest.json is not valid JSON"),
    }  # fmt: skip
    return run_named_console_cases("auto_learngene.cli", cases)


@pytest.mark.parametrize(
    "case",
    [
        "output dir is a file",
        "non-UTF-8 ancestry config",
        "ancestry metadata without input_shape",
        "corrupt ancestry weights",
        "ancestry trained on other images",
        "meta_lr=.nan",
        "unknown key",
        "NaN loss",
        "meta-training diverges",
        "truncated learngene manifest",
    ],
)
def test_bad_input_is_one_error_line_with_exit_code_2(results, case):
    result, culprit = results[case]
    one_error_line(result, "auto-learngene", culprit)


def test_a_condense_stopped_by_nan_loss_reruns_in_place(ancestry_dir, tmp_path, capsys):
    argv = ["condense", "--config", "tiny", "--output-dir", str(tmp_path / "o"), f"ancestry.run={ancestry_dir}",
            "train.max_steps=2", "train.progress=false", "method.k=2"]  # fmt: skip
    assert main([*argv, "train.lr=1e30"]) == 2
    assert "loss became nan" in capsys.readouterr().err
    assert main(argv) == 0  # the same command, a sane lr: no "not empty"
    assert (tmp_path / "o" / "learngene" / "manifest.json").is_file()


def test_the_check_before_step_1_changes_nothing(ancestry_dir, tmp_path):
    """The meta-transfer loss offers a `probe` (no meta step, phi untouched): a condense run with the Trainer's
    check before step 1 writes the same weights, bit for bit, as one without it."""
    argv = ["condense", "--config", "tiny", f"ancestry.run={ancestry_dir}", "train.max_steps=3",
            "train.progress=false", "method.k=2"]  # fmt: skip
    assert_probe_changes_nothing(main, argv, tmp_path)
