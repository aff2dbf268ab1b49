"""Session fixtures: one small ancestry (`learngene train`) and one TLEG learngene extracted from it (`tleg extract`).

Both are produced once per test session through the console scripts, in-process, and shared read-only by the
tests. Tiny models run faster on one torch thread than on several, so the whole session uses one.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from learngene_core.cli import main as learngene_main
from learngene_core.learngene import Learngene
from learngene_core.testing import one_torch_thread  # noqa: F401  (session fixture: one torch thread)
from tleg.cli import main as tleg_main

# The ancestry: the digits-ancestry preset (width 64, 4 heads, patch 4, 16x16 digits 0-4), made shallow.
ANCESTRY_DEPTH = 2
ANCESTRY_OVERRIDES = [f"model.kwargs.depth={ANCESTRY_DEPTH}", "train.epochs=20", "train.progress=false"]
# The learngene: the tiny preset with a 4-layer aux net.
AUX_DEPTH = 4
EXTRACT_OVERRIDES = [f"method.aux_depth={AUX_DEPTH}", "train.epochs=10", "train.progress=false"]
WIDTH, NUM_CLASSES = 64, 5


@pytest.fixture(scope="session")
def ancestry_dir(tmp_path_factory) -> Path:
    """A trained `learngene train` run directory (the ancestry)."""
    out = tmp_path_factory.mktemp("ancestry") / "run"
    code = learngene_main(
        ["train", "--config", "digits-ancestry", "--output-dir", str(out), *ANCESTRY_OVERRIDES]
    )
    assert code == 0, "training the ancestry failed"
    return out


@pytest.fixture(scope="session")
def learngene_dir(tmp_path_factory, ancestry_dir) -> Path:
    """A TLEG learngene directory written by `tleg extract` from the ancestry (with its aux-run/)."""
    out = tmp_path_factory.mktemp("learngene") / "lg"
    code = tleg_main(
        [
            "extract",
            "--config",
            "tiny",
            "--output-dir",
            str(out),
            f"ancestry.run={ancestry_dir}",
            *EXTRACT_OVERRIDES,
        ]
    )
    assert code == 0, "extracting the learngene failed"
    return out


@pytest.fixture
def learngene(learngene_dir) -> Learngene:
    """A fresh in-memory copy of the extracted learngene (tests may modify it)."""
    return Learngene.load(learngene_dir, method="tleg")


@pytest.fixture(scope="session")
def manifest(learngene_dir) -> dict:
    return json.loads((learngene_dir / "manifest.json").read_text())
