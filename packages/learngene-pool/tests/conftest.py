"""Session fixtures, made once through the console scripts in-process and shared read-only: a small digits
ancestry (`learngene train`), a narrow (width 32) and a wide (width 64 = the ancestry's) auxiliary model
(`learngene-pool distill`), and the pool built from them (`learngene-pool build`). One torch thread throughout.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from learngene_core.cli import main as learngene_main
from learngene_core.testing import one_torch_thread  # noqa: F401  (session fixture: one torch thread)
from learngene_pool.cli import main as pool_main

QUIET = ["train.progress=false"]
ANCESTRY_DEPTH = 3


@pytest.fixture(scope="session")
def ancestry_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("ancestry") / "run"
    argv = [
        "train",
        "--config",
        "digits-ancestry",
        "--output-dir",
        str(out),
        f"model.kwargs.depth={ANCESTRY_DEPTH}",
    ]
    assert learngene_main([*argv, "train.epochs=12", *QUIET]) == 0
    return out


def distill(tmp_path_factory, ancestry_dir: Path, preset: str, *overrides: str) -> Path:
    out = tmp_path_factory.mktemp(preset) / "aux"
    argv = ["distill", "--config", preset, "--output-dir", str(out), f"ancestry.run={ancestry_dir}"]
    assert pool_main([*argv, "train.epochs=12", *QUIET, *overrides]) == 0
    return out


@pytest.fixture(scope="session")
def narrow_dir(tmp_path_factory, ancestry_dir) -> Path:
    return distill(tmp_path_factory, ancestry_dir, "tiny-aux-narrow")


@pytest.fixture(scope="session")
def wide_dir(tmp_path_factory, ancestry_dir) -> Path:
    return distill(tmp_path_factory, ancestry_dir, "tiny-aux-wide")


@pytest.fixture(scope="session")
def pool_dir(tmp_path_factory, narrow_dir, wide_dir) -> Path:
    out = tmp_path_factory.mktemp("pool") / "pool"
    argv = ["build", "--config", "tiny-build", "--output-dir", str(out), f"aux=[{wide_dir},{narrow_dir}]"]
    assert pool_main([*argv, "train.epochs=6", *QUIET]) == 0
    return out
