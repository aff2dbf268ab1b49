"""Bad input through the console script: one `learngene-pool: error: ...` line naming the culprit, exit code 2,
no traceback, existing outputs untouched. The first cases run the installed script in a subprocess, as a user would;
the table of the issue-17 categories (side files, shape mismatches, corrupt files, non-finite values) runs in one
interpreter."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from learngene_core.testing import assert_one_error_line, copy_with, one_error_line, run_named_console_cases
from learngene_pool.cli import main


def run_subprocess(*argv) -> tuple[int, str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "learngene_pool.cli", *map(str, argv)], capture_output=True, text=True, env=env
    )
    return proc.returncode, proc.stderr


def run_inprocess(capsys, *argv) -> tuple[int, str]:
    code = main([str(a) for a in argv])
    return code, capsys.readouterr().err


def assert_one_line(code: int, err: str, *culprits: str) -> None:
    assert_one_error_line(code, err, "learngene-pool", *culprits)


def snapshot(directory: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(directory)): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()
    }


def test_unknown_config_id_lists_the_valid_range(pool_dir, tmp_path):
    out = tmp_path / "d"
    code, err = run_subprocess("init", "--pool", pool_dir, "--config-id", "42", "--output-dir", out)
    assert_one_line(code, err, "unknown config id 42", "configs 0..8")
    assert not out.exists()


def test_width_that_does_not_split_into_heads_is_refused_before_training(ancestry_dir, tmp_path):
    out = tmp_path / "aux"
    code, err = run_subprocess(
        "distill", "--config", "tiny-aux-wide", "--output-dir", out, f"ancestry.run={ancestry_dir}",
        "model.kwargs.embed_dim=30",
    )  # fmt: skip
    assert_one_line(code, err, "embed_dim 30", "4 heads")
    assert not out.exists()


def test_aux_model_of_another_ancestry_is_refused(narrow_dir, wide_dir, tmp_path):
    other = tmp_path / "other-aux"
    shutil.copytree(wide_dir, other)
    manifest = json.loads((other / "aux.json").read_text())
    manifest["ancestry"].update(fingerprint="0" * 16, source="vit from elsewhere/final")
    (other / "aux.json").write_text(json.dumps(manifest))
    out = tmp_path / "pool"
    code, err = run_subprocess(
        "build", "--config", "tiny-build", "--output-dir", out, f"aux=[{narrow_dir},{other}]"
    )
    assert_one_line(code, err, str(other), "another ancestry")
    assert not out.exists()


def test_pool_directory_of_another_version_is_refused(pool_dir, tmp_path):
    old = tmp_path / "old-pool"
    shutil.copytree(pool_dir, old)
    manifest = json.loads((old / "pool.json").read_text())
    manifest["version"] = 99
    (old / "pool.json").write_text(json.dumps(manifest))
    before = snapshot(old)
    code, err = run_subprocess("list", "--pool", old)
    assert_one_line(code, err, str(old / "pool.json"), "version 99", "version 1")
    assert snapshot(old) == before


def test_init_into_an_existing_output_leaves_it_untouched(capsys, pool_dir, tmp_path):
    out = tmp_path / "taken"
    out.mkdir()
    (out / "mine.txt").write_text("keep me")
    code, err = run_inprocess(capsys, "init", "--pool", pool_dir, "--config-id", "2", "--output-dir", out)
    assert_one_line(code, err, str(out), "not empty")
    assert snapshot(out) == {"mine.txt": b"keep me"}


def test_bad_config_id_for_train_touches_no_run_dir(capsys, pool_dir, tmp_path):
    out = tmp_path / "run"
    code, err = run_inprocess(
        capsys, "train", "--pool", pool_dir, "--config-id", "9", "--config", "tiny-train", "--output-dir", out
    )
    assert_one_line(code, err, "unknown config id 9", "0..8")
    assert not out.exists()
    code, err = run_inprocess(
        capsys,
        "train",
        "--pool",
        pool_dir,
        "--config-id",
        "two",
        "--config",
        "tiny-train",
        "--output-dir",
        out,
    )
    assert_one_line(code, err, "--config-id", "'two'")


@pytest.mark.parametrize(
    "argv, culprit",
    [
        (["build", "--config", "tiny-build", "stitch_init=svd"], "stitch_init"),
        (["build", "--config", "tiny-build", "aux=[]"], "at least two auxiliary models"),
        (["distill", "--config", "tiny-aux-wide", "positions=[middle]"], "positions"),
        (["build", "--config", "tiny-build", "bogus=1"], "bogus"),
    ],
)
def test_bad_configs_name_the_key(capsys, tmp_path, argv, culprit):
    code, err = run_inprocess(capsys, *argv, "--output-dir", tmp_path / "out")
    assert_one_line(code, err, culprit)
    assert not (tmp_path / "out").exists()


def test_missing_pool_and_aux_directories_are_named(capsys, tmp_path, narrow_dir):
    code, err = run_inprocess(capsys, "list", "--pool", tmp_path / "nowhere")
    assert_one_line(code, err, str(tmp_path / "nowhere"), "pool.json")
    code, err = run_inprocess(
        capsys,
        "build",
        "--config",
        "tiny-build",
        "--output-dir",
        tmp_path / "p",
        f"aux=[{narrow_dir},{tmp_path}]",
    )
    assert_one_line(code, err, str(tmp_path), "aux.json")


@pytest.fixture(scope="module")
def results(tmp_path_factory, ancestry_dir, narrow_dir, wide_dir, pool_dir):
    tmp = tmp_path_factory.mktemp("bad")
    latin_aux = copy_with(narrow_dir, tmp / "latin-aux", {"aux.json": b'{"format": "caf\xe9"}'})
    truncated_pool = copy_with(pool_dir, tmp / "truncated-pool", {"pool.json": b'{"format": "learn'})
    garbage_pool = copy_with(
        pool_dir, tmp / "garbage-pool", {"final/model.safetensors": b"\x80\x02garbage" * 10}
    )
    bad_meta = copy_with(ancestry_dir, tmp / "bad-meta", {"final/metadata.json": b"{"})

    def edited(directory: Path, name: str, out: str, **changes: object) -> Path:
        """`directory` with its JSON manifest `name` edited (a key set to None is removed)."""
        manifest = json.loads((directory / name).read_text())
        manifest.update(changes)
        manifest = {k: v for k, v in manifest.items() if v is not None}
        return copy_with(directory, tmp / out, {name: json.dumps(manifest).encode()})

    string_width = edited(narrow_dir, "aux.json", "string-width", width="narrow")
    no_kwargs = edited(narrow_dir, "aux.json", "no-kwargs", timm_kwargs=None)
    string_rows = edited(pool_dir, "pool.json", "string-rows", descendants="x")
    no_instances = edited(pool_dir, "pool.json", "no-instances", instances=None)
    build = ["build", "--config", "tiny-build", "--output-dir", str(tmp / "b2")]
    quick = ["train.max_steps=2", "train.progress=false"]

    def distill(out: str, *overrides: str) -> list[str]:
        return ["distill", "--config", "tiny-aux-narrow", "--output-dir", str(tmp / out), *quick, *overrides]

    def train(out: str, *overrides: str) -> list[str]:
        pool = ["--pool", str(pool_dir), "--config-id", "1"]
        return ["train", *pool, "--config", "tiny-train", "--output-dir", str(tmp / out), *quick, *overrides]

    cases = {
        "ancestry trained on other images": (distill("d1", f"ancestry.run={ancestry_dir}", "data.image_size=32"), "the teacher (VisionTransformer) cannot run on a training batch (inputs (2, 1, 32, 32))"),
        "aux patch larger than the image": (distill("d2", f"ancestry.run={ancestry_dir}", "model.kwargs.patch_size=32"), "the student (VisionTransformer) cannot run on a training batch"),
        "truncated ancestry metadata.json": (distill("d3", f"ancestry.run={bad_meta}"), "metadata.json is not valid JSON"),
        "non-UTF-8 aux.json": (["build", "--config", "tiny-build", "--output-dir", str(tmp / "b1"), f"aux=[{latin_aux},{wide_dir}]"], "aux.json is not UTF-8"),
        "aux.json with a string width": ([*build, f"aux=[{string_width},{wide_dir}]"], "string-width/aux.json: 'width' is missing or not an integer"),
        "aux.json without timm_kwargs": ([*build, f"aux=[{no_kwargs},{wide_dir}]"], "no-kwargs/aux.json: 'timm_kwargs' is missing or not a mapping"),
        "pool.json with rows that are a string": (["list", "--pool", str(string_rows)], "string-rows/pool.json: 'descendants' is not a list of rows"),
        "pool.json without instances": (["init", "--pool", str(no_instances), "--config-id", "1", "--output-dir", str(tmp / "i2")], "'instances' is missing or not a list"),
        "truncated pool.json": (["list", "--pool", str(truncated_pool)], "pool.json is not valid JSON"),
        "corrupt pool weights": (["init", "--pool", str(garbage_pool), "--config-id", "1", "--output-dir", str(tmp / "i1")], "model.safetensors"),
        "eval on images of another size": (["eval", "--pool", str(pool_dir), "data.image_size=32"], "the pool's descendants take (1, 16, 16)"),
        "lr=.nan": (train("t1", "train.lr=.nan"), "'train.lr' must be a finite number"),
        "NaN loss": (train("t2", "train.lr=1e30"), "loss became nan"),
    }  # fmt: skip
    return run_named_console_cases("learngene_pool.cli", cases)


@pytest.mark.parametrize(
    "case",
    [
        "ancestry trained on other images",
        "aux patch larger than the image",
        "truncated ancestry metadata.json",
        "non-UTF-8 aux.json",
        "aux.json with a string width",
        "aux.json without timm_kwargs",
        "pool.json with rows that are a string",
        "pool.json without instances",
        "truncated pool.json",
        "corrupt pool weights",
        "eval on images of another size",
        "lr=.nan",
        "NaN loss",
    ],
)
def test_bad_input_is_one_error_line_with_exit_code_2(results, case):
    result, culprit = results[case]
    one_error_line(result, "learngene-pool", culprit)
