"""Session fixtures: a small ViT ancestry (`learngene train`, digits 0-4) and one condensed learngene from it."""

from __future__ import annotations

from pathlib import Path

import pytest

from auto_learngene.cli import main as auto_main
from learngene_core.cli import main as learngene_main
from learngene_core.testing import one_torch_thread  # noqa: F401  (session fixture: one torch thread)

ANCESTRY_DEPTH = 3


@pytest.fixture(scope="session")
def ancestry_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("ancestry") / "run"
    overrides = [f"model.kwargs.depth={ANCESTRY_DEPTH}", "train.epochs=8", "train.progress=false"]
    assert learngene_main(["train", "--config", "digits-ancestry", "--output-dir", str(out), *overrides]) == 0
    return out


@pytest.fixture(scope="session")
def condensed_dir(tmp_path_factory, ancestry_dir) -> Path:
    out = tmp_path_factory.mktemp("auto") / "run"
    overrides = [
        f"ancestry.run={ancestry_dir}",
        "method.k=2",
        "train.epochs=4",
        "method.max_layer_distance=null",
    ]
    assert auto_main(["condense", "--config", "tiny", "--output-dir", str(out), *overrides]) == 0
    return out
