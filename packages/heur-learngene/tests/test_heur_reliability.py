"""Bad input through the console script: one `heur-learngene: error:` line naming the culprit, exit code 2,
nothing written. The first cases run the installed script, one process each; the table of the issue-17 categories
(file system, side files, corrupt files, non-finite values) runs in one interpreter."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from heur_learngene.cli import main
from learngene_core.testing import assert_one_error_line, copy_with, one_error_line, run_named_console_cases


def cli(*argv) -> tuple[int, str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    script = Path(sys.executable).with_name("heur-learngene")
    done = subprocess.run([str(script), *map(str, argv)], capture_output=True, text=True, env=env)
    return done.returncode, done.stderr


def assert_one_line(code: int, err: str, *culprits: str) -> None:
    assert_one_error_line(code, err, "heur-learngene", *culprits)


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


@pytest.fixture(scope="module")
def results(tmp_path_factory, collective_dir):
    tmp = tmp_path_factory.mktemp("bad")
    (tmp / "a-file").write_text("x")
    stream = {
        "truncated": copy_with(collective_dir, tmp / "truncated", {"stream.jsonl": b'{"task": 0, "upd\n'}),
        "latin1": copy_with(collective_dir, tmp / "latin1", {"stream.jsonl": b"\xe9\n"}),
        "no-scores": copy_with(collective_dir, tmp / "no-scores", {"stream.jsonl": b'{"task": 0}\n'}),
    }
    latin_config = copy_with(collective_dir, tmp / "latin-config", {"config.yaml": b"seed: caf\xe9\n"})
    garbage = copy_with(
        collective_dir / "learngene", tmp / "garbage-lg", {"learngene.safetensors": b"\x80\x02garbage" * 10}
    )
    quick = ["train.max_steps=2", "train.progress=false"]
    manifest = json.loads((collective_dir / "learngene" / "manifest.json").read_text())

    def edited_manifest(name: str, **spec: object) -> Path:
        changed = {**manifest, "spec": {**manifest["spec"], **spec}}
        return copy_with(
            collective_dir / "learngene", tmp / name, {"manifest.json": json.dumps(changed).encode()}
        )

    def expand(learngene: Path) -> list[str]:
        return ["expand", "--learngene", str(learngene), "--num-classes", "2", "--output-dir", str(tmp / "x")]

    def choose(run: Path, *overrides: str) -> list[str]:
        return ["choose", "--run", str(run), "--output-dir", str(tmp / "out"), *overrides]

    cases = {
        "output dir is a file": (["collective", "--output-dir", str(tmp / "a-file"), *quick], "a-file is a file"),
        "truncated stream.jsonl": (choose(stream["truncated"]), "stream.jsonl:1: not a JSON record"),
        "non-UTF-8 stream.jsonl": (choose(stream["latin1"]), "stream.jsonl is not UTF-8"),
        "stream record without scores": (choose(stream["no-scores"]), "stream.jsonl:1: 'update' is not a list of finite numbers"),
        "non-UTF-8 run config": (choose(latin_config), "config.yaml: not UTF-8"),
        "late_fraction=.nan": (choose(collective_dir, "method.late_fraction=.nan"), "'method.late_fraction' must be a finite number"),
        "corrupt learngene weights": (["train", "--learngene", str(garbage), "--output-dir", str(tmp / "t1"), *quick], "learngene.safetensors"),
        "manifest with layers as a string": (expand(edited_manifest("lg-string", layers="x")), "'spec.layers' is missing or not a list of layer indices in 0..12"),
        "manifest with a layer outside the ancestry": (expand(edited_manifest("lg-99", layers=[99])), "'spec.layers' is missing or not a list of layer indices"),
        "NaN loss": (["collective", "--output-dir", str(tmp / "c1"), *quick, "train.lr=1e30"], "loss became nan"),
    }  # fmt: skip
    return run_named_console_cases("heur_learngene.cli", cases)


@pytest.mark.parametrize(
    "case",
    [
        "output dir is a file",
        "truncated stream.jsonl",
        "non-UTF-8 stream.jsonl",
        "stream record without scores",
        "non-UTF-8 run config",
        "late_fraction=.nan",
        "corrupt learngene weights",
        "manifest with layers as a string",
        "manifest with a layer outside the ancestry",
        "NaN loss",
    ],
)
def test_bad_input_is_one_error_line_with_exit_code_2(results, case):
    result, culprit = results[case]
    one_error_line(result, "heur-learngene", culprit)


def test_a_collective_run_stopped_by_nan_loss_reruns_in_place(tmp_path, capsys):
    argv = ["collective", "--output-dir", str(tmp_path / "run"), "train.max_steps=2", "train.progress=false"]
    assert main([*argv, "train.lr=1e30"]) == 2
    assert "loss became nan" in capsys.readouterr().err
    assert main(argv) == 0  # the same command, a sane lr: no "not empty"
    assert (tmp_path / "run" / "learngene" / "manifest.json").is_file()
