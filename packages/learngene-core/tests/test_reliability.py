"""Bad inputs through the `learngene` console script: one `learngene: error:` line naming the culprit, exit 2.

The table runs in one fresh interpreter (`run_named_console_cases`: torch is imported once, not per case); one case
also runs as the installed console script to pin the process-level contract (stderr, exit status).
"""

from __future__ import annotations

import errno
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

from learngene_core.cli import main
from learngene_core.clitools import run_cli
from learngene_core.config import load_config, save_config
from learngene_core.errors import CheckpointError
from learngene_core.metrics import read_metrics, repair_jsonl
from learngene_core.testing import (
    HostilePickle,
    interrupt_after_checkpoint,
    one_error_line,
    run_named_console_cases,
)

QUICK = ["train.epochs=1", "train.progress=false"]


def _image_folder(root: Path, classes: list[str], per_class: int = 4, corrupt: bool = False) -> Path:
    rng = np.random.default_rng(0)
    for name in classes:
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            pixels = rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(root / name / f"{i}.png")
    if corrupt:
        (root / classes[0] / "0.png").write_bytes(b"not a png")
    return root


def _stopped_run_with(tmp: Path, name: str, files: dict[str, bytes]) -> Path:
    """A run directory as `learngene train --config digits-vit` leaves it, with `files` written into it."""
    run = tmp / name
    save_config(load_config("digits-vit", QUICK), run / "config.yaml")
    for rel, data in files.items():
        (run / rel).parent.mkdir(parents=True, exist_ok=True)
        (run / rel).write_bytes(data)
    return run


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("bad")
    (tmp / "a-file").write_text("x")
    (tmp / "latin1.yaml").write_bytes("train:\n  lr: 0.1  # caf\xe9\n".encode("latin-1"))
    one_class = _image_folder(tmp / "one-class", ["cat"])
    corrupt = _image_folder(tmp / "corrupt", ["cat", "dog"], corrupt=True)
    torch.save({"w": HostilePickle()}, tmp / "evil.pt")
    (tmp / "broken.pt").write_bytes(b"\x80\x02garbage" * 10)
    save_file({"head.weight": torch.tensor([1.0, float("nan")])}, str(tmp / "nan.safetensors"))
    torch.save({"head.bias": torch.tensor([float("inf")])}, tmp / "inf.pt")
    bad_meta = _stopped_run_with(
        tmp,
        "bad-meta",
        {"checkpoints/last/metadata.json": b'{"step": 3', "checkpoints/last/training_state.pt": b""},
    )
    train = ["train", "--config", "digits-vit"]
    cases = {
        "output dir is a file": ([*train, "--output-dir", str(tmp / "a-file"), *QUICK], "a-file is a file"),
        "output dir inside a file": ([*train, "--output-dir", str(tmp / "a-file" / "run"), *QUICK], "Not a directory"),
        "non-UTF-8 YAML": (["train", "--config", str(tmp / "latin1.yaml"), "--output-dir", str(tmp / "r1")], "latin1.yaml: not UTF-8"),
        "lr=.nan": ([*train, "--output-dir", str(tmp / "r2"), "train.lr=.nan", *QUICK], "'train.lr' must be a finite number"),
        "lr=.inf": ([*train, "--output-dir", str(tmp / "r3"), "train.lr=.inf", *QUICK], "'train.lr' must be a finite number"),
        "seed=-1": ([*train, "--output-dir", str(tmp / "r4"), "--seed", "-1", *QUICK], "seed must be in [0,"),
        "patch larger than the image": ([*train, "--output-dir", str(tmp / "r5"), "model.kwargs.patch_size=32", *QUICK], "cannot run on a training batch (inputs (2, 1, 16, 16))"),
        "one-class image folder": ([*train, "--output-dir", str(tmp / "r6"), "data.name=image-folder", f"data.path={one_class}", *QUICK], "1 class (cat)"),
        "corrupt image": ([*train, "--output-dir", str(tmp / "r7"), "data.name=image-folder", f"data.path={corrupt}", "data.image_size=16", *QUICK], "0.png"),
        "NaN loss": ([*train, "--output-dir", str(tmp / "r8"), "train.lr=1e30", *QUICK], "loss became nan"),
        "corrupt metadata.json on resume": ([*train, "--output-dir", str(bad_meta), "--resume", *QUICK], "metadata.json is not valid JSON"),
        "hostile .pt checkpoint": (["eval", "--config", "digits-vit", "--checkpoint", str(tmp / "evil.pt")], "refused"),
        "NaN weights in eval": (["eval", "--config", "digits-vit", "--checkpoint", str(tmp / "nan.safetensors")], "nan.safetensors: tensor 'head.weight' holds NaN or infinite values"),
        "inf weights in eval (.pt)": (["eval", "--config", "digits-vit", "--checkpoint", str(tmp / "inf.pt")], "inf.pt: tensor 'head.bias' holds NaN or infinite values"),
        "NaN model.checkpoint": ([*train, "--output-dir", str(tmp / "r9"), f"model.checkpoint={tmp / 'nan.safetensors'}", *QUICK], "tensor 'head.weight' holds NaN"),
        "corrupt .pt checkpoint": (["eval", "--config", "digits-vit", "--checkpoint", str(tmp / "broken.pt")], "not a torch checkpoint"),
    }  # fmt: skip
    return run_named_console_cases("learngene_core.cli", cases)


CASES = [
    "output dir is a file",
    "output dir inside a file",
    "non-UTF-8 YAML",
    "lr=.nan",
    "lr=.inf",
    "seed=-1",
    "patch larger than the image",
    "one-class image folder",
    "corrupt image",
    "NaN loss",
    "corrupt metadata.json on resume",
    "hostile .pt checkpoint",
    "corrupt .pt checkpoint",
    "NaN weights in eval",
    "inf weights in eval (.pt)",
    "NaN model.checkpoint",
]


@pytest.mark.parametrize("case", CASES)
def test_bad_input_is_one_error_line_with_exit_code_2(results, case):
    result, culprit = results[case]
    one_error_line(result, "learngene", culprit)


def test_the_installed_console_script_exits_2_with_one_line(tmp_path):
    script = Path(sys.executable).with_name("learngene")
    (tmp_path / "a-file").write_text("x")
    cmd = [str(script), "train", "--config", "digits-vit", "--output-dir", str(tmp_path / "a-file")]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [f"learngene: error: output dir {tmp_path / 'a-file'} is a file, "
                                                "not a directory; choose another --output-dir"]  # fmt: skip


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (PermissionError(errno.EACCES, "Permission denied", "/runs/ro/config.yaml"), "Permission denied: /runs/ro/config.yaml"),
        (OSError(errno.ENOSPC, "No space left on device", "/runs/x/.last.ab.tmp"), "No space left on device: /runs/x/.last.ab.tmp"),
    ],
)  # fmt: skip
def test_file_system_errors_are_one_line_naming_the_path(capsys, error, expected):
    def command(argv):
        raise error

    assert run_cli("learngene", command, []) == 2
    assert capsys.readouterr().err.splitlines() == [f"learngene: error: {expected}"]


def test_a_run_stopped_by_nan_loss_reruns_in_place(tmp_path, capsys):
    out = str(tmp_path / "run")
    assert main(["train", "--config", "digits-vit", "--output-dir", out, "train.lr=1e30", *QUICK]) == 2
    assert "loss became nan" in capsys.readouterr().err
    assert (
        main(["train", "--config", "digits-vit", "--output-dir", out, "--resume", "train.lr=1e-3", *QUICK])
        == 2
    )
    assert "rerun without --resume to start it over" in capsys.readouterr().err
    assert main(["train", "--config", "digits-vit", "--output-dir", out, "train.lr=1e-3", *QUICK]) == 0
    assert load_config(Path(out) / "config.yaml").train.lr == 1e-3
    steps = [r["step"] for r in read_metrics(Path(out) / "metrics.jsonl") if r["split"] == "train"]
    assert steps == sorted(set(steps))  # no records of the failed attempt are left


def test_metrics_log_with_a_broken_line_names_it_but_a_torn_last_line_is_skipped(tmp_path, capsys):
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"step": 1, "split": "train"}\n{"step": 2, "spl')
    assert read_metrics(path) == [{"step": 1, "split": "train"}]  # a killed write
    assert capsys.readouterr().err.count(f"warning: {path}: skipped its torn last line") == 1
    path.write_text('{"step": 1, "split": "train"}\nnot json\n{"step": 3}\n')
    with pytest.raises(CheckpointError, match=r"metrics.jsonl:2: not a JSON record"):
        read_metrics(path)


@pytest.mark.parametrize(
    ("data", "records", "mended"),
    [
        (b'{"a": 1}\n{"a": 2, "b', [{"a": 1}], b'{"a": 1}\n'),  # torn inside a record
        (b'{"a": 1}\n{"a": 2, "b": "caf\xc3', [{"a": 1}], b'{"a": 1}\n'),  # inside a UTF-8 character
        (b'{"a": 1}\n{"a": 2}', [{"a": 1}, {"a": 2}], b'{"a": 1}\n{"a": 2}\n'),  # only its newline is missing
        (b'{"a": 1}\n', [{"a": 1}], b'{"a": 1}\n'),
        (b'{"a', [], b""),
    ],
    ids=["torn", "torn-inside-a-character", "no-newline", "whole", "only-line"],
)  # fmt: skip
def test_repair_jsonl_cuts_a_torn_last_line_so_appending_continues_the_log(
    tmp_path, capsys, data, records, mended
):
    path = tmp_path / "stream.jsonl"
    path.write_bytes(data)
    assert repair_jsonl(path) == records
    assert path.read_bytes() == mended
    torn = data[len(mended) :] if len(mended) < len(data) else None
    warning = f"warning: {path}: dropped its torn last line (a write cut short by a kill): {torn!r}"
    assert capsys.readouterr().err.splitlines() == ([warning] if torn else [])
    with path.open("a") as fh:
        fh.write('{"a": 3}\n')
    assert read_metrics(path) == [*records, {"a": 3}]


@pytest.mark.parametrize(
    ("data", "error"),
    [
        (b'{"a": 1}\n{"a": 2\n{"a": 3', r"stream.jsonl:2: not a JSON record"),
        (b'{"a": 1}\n{"a": "caf\xe9"}\n', r"stream.jsonl is not UTF-8 text \(line 2\)"),
    ],
)
def test_repair_jsonl_refuses_a_broken_line_before_the_last_and_leaves_the_file(tmp_path, data, error):
    path = tmp_path / "stream.jsonl"
    path.write_bytes(data)
    with pytest.raises(CheckpointError, match=error):
        repair_jsonl(path)
    assert path.read_bytes() == data


def test_resume_after_a_kill_mid_write_drops_the_torn_metrics_line_with_a_warning(tmp_path, capsys):
    args = ["train", "--config", "digits-vit", "--output-dir", str(tmp_path / "run"), *QUICK]
    with interrupt_after_checkpoint(1):
        assert main(args) == 130
    metrics = tmp_path / "run" / "metrics.jsonl"
    with metrics.open("a") as fh:  # what `kill -9` in the middle of a record's write leaves
        fh.write('{"step": 99, "split": "tr')
    capsys.readouterr()
    assert main([*args, "--resume"]) == 0
    assert f"warning: {metrics}: dropped its torn last line" in capsys.readouterr().err
    steps = [(r["step"], r["split"]) for r in read_metrics(metrics)]
    assert (99, "tr") not in steps and steps == sorted(set(steps), key=steps.index)


def test_a_hand_written_config_yaml_in_the_output_dir_is_not_taken_for_a_run(tmp_path, capsys):
    out = tmp_path / "project"
    out.mkdir()
    (out / "config.yaml").write_text("train:\n  lr: 0.01  # my notes\n")
    assert main(["train", "--config", str(out / "config.yaml"), "--output-dir", str(out), *QUICK]) == 2
    assert "is not empty" in capsys.readouterr().err
    assert (out / "config.yaml").read_text() == "train:\n  lr: 0.01  # my notes\n"
