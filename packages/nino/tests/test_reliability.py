"""Bad inputs through the `nino` console script in a subprocess: one `nino: error:` line naming the culprit,
exit code 2, no traceback, and no output directory left behind."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from learngene_core.testing import assert_one_error_line
from nino.model import WNNPlus

SCRIPT = Path(sys.executable).with_name("nino")
TRAIN = ["train", "--config", "train-tiny", "--output", "{out}"]


def nino(args: list[str], tmp_path: Path) -> subprocess.CompletedProcess:
    command = [str(SCRIPT)] if SCRIPT.exists() else [sys.executable, "-m", "nino.cli"]
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "NINO_CACHE": str(tmp_path / "cache"),  # empty cache, and no network: the offline path
        "NINO_CHECKPOINT_URL": str(tmp_path / "no-mirror"),
    }
    args = [a.format(out=tmp_path / "out", tmp=tmp_path) for a in args]
    return subprocess.run(command + args, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)


@pytest.fixture
def bad_files(tmp_path: Path) -> None:
    (tmp_path / "corrupt.pt").write_bytes(b"PK\x03\x04 truncated zip")
    (tmp_path / "a-file").write_text("x\n")  # neither a directory nor a checkpoint
    state = WNNPlus(hid=4).state_dict()
    state["edge_mlp.fc.6.bias"][0] = float("nan")
    torch.save({"state_dict": state, "model_args": {"gnn": False, "hid": 4}}, tmp_path / "nan.pt")


CASES = {
    "nan lr": ([*TRAIN, "lr=.nan"], ["lr", "nan"]),
    "inf lr, compare": ([*TRAIN, "--compare", "lr=.inf"], ["lr", "inf"]),
    "nan guard factor": ([*TRAIN, "guard_factor=.nan"], ["guard_factor"]),
    "unknown extra key": ([*TRAIN, "extra.bogus=1"], ["extra.bogus"]),
    "unknown checkpoint name": ([*TRAIN, "--ckpt", "nino-big"], ["nino-big", "nino-no-posw"]),
    "published checkpoint offline": ([*TRAIN, "--ckpt", "nino-mlp"], ["cannot download", "nino_mlp.pt"]),
    "corrupt checkpoint": ([*TRAIN, "--ckpt", "{tmp}/corrupt.pt"], ["corrupt.pt", "corrupt"]),
    "NaN-weight checkpoint": ([*TRAIN, "--ckpt", "{tmp}/nan.pt"], ["nan.pt", "NaN"]),
    "output dir is a file": (
        ["train", "--config", "train-tiny", "--output", "{tmp}/a-file"],
        ["a-file is a file"],
    ),
    "a text file as checkpoint": ([*TRAIN, "--ckpt", "{tmp}/a-file"], ["a-file", "not a torch checkpoint"]),
    "unknown model": (["graph", "--model", "resnet-9000"], ["resnet-9000"]),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_is_one_line_and_exit_code_2(case, tmp_path, bad_files):
    args, culprits = CASES[case]
    done = nino(args, tmp_path)
    line = assert_one_error_line(done.returncode, done.stderr, "nino", *culprits)
    assert "weights_only" not in line
    assert not (tmp_path / "out").exists()
