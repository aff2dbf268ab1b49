"""Session fixtures: one small digits ancestry and one SWS learngene distilled from it, reused by every test.

The ancestry is a 4-layer ViT (width 64) trained on digits 0-4; the learngene has three stages of 1, 2 and 1
layers (aux layout [0, 1, 1, 2]), so it holds 3 blocks against the ancestry's 4. Both are trained just long
enough (20 epochs each, a few seconds on one CPU thread) for the learngene to carry transferable features:
with 3-epoch runs the aux net stays near chance and learngene vs scratch comparisons are noise.

Everything runs in-process through the console scripts' `main(argv)`, on one torch thread: these models
are so small that a second thread only adds synchronisation (on a shared 2-core machine, >10x slower).
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from learngene_core.cli import main as learngene_main
from learngene_core.testing import one_torch_thread  # noqa: F401  (session fixture: one torch thread)
from sws.cli import main as sws_main

STAGES = [1, 2, 1]  # aux layout [0, 1, 1, 2]; the tests read it back from the manifest
ANCESTRY_DEPTH = 4  # 4 blocks against the learngene's 3


@dataclass
class CliResult:
    code: int
    out: str
    err: str

    @property
    def err_lines(self) -> list[str]:
        return [line for line in self.err.splitlines() if line.strip()]


def run_main(main: Callable[[Sequence[str]], int], argv: Sequence[str]) -> CliResult:
    """Run a console script in-process, capturing what it prints."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([str(a) for a in argv])
    return CliResult(code, out.getvalue(), err.getvalue())


def run_ok(main: Callable[[Sequence[str]], int], argv: Sequence[str]) -> CliResult:
    result = run_main(main, argv)
    assert result.code == 0, f"{argv} failed with {result.code}:\n{result.out}\n{result.err}"
    return result


@pytest.fixture(scope="session")
def sws_cli() -> Callable[..., CliResult]:
    """`sws_cli(*argv)`: run `sws` in-process and return its exit code, stdout and stderr."""
    return lambda *argv: run_main(sws_main, argv)


@pytest.fixture(scope="session")
def ancestry_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("ancestry") / "run"
    run_ok(
        learngene_main,
        [
            "train", "--config", "digits-ancestry", "--output-dir", out,
            "train.progress=false", f"model.kwargs.depth={ANCESTRY_DEPTH}", "train.epochs=20",
        ],
    )  # fmt: skip
    return out


@pytest.fixture(scope="session")
def learngene_dir(tmp_path_factory, ancestry_dir) -> Path:
    out = tmp_path_factory.mktemp("sws") / "learngene"
    run_ok(
        sws_main,
        [
            "extract", "--config", "tiny", "--output-dir", out, f"ancestry.run={ancestry_dir}",
            "train.progress=false", f"method.stages=[{','.join(map(str, STAGES))}]", "train.epochs=20",
        ],
    )  # fmt: skip
    return out
