"""Session fixture: one tiny collective run (`heur-learngene collective --config tiny`, few epochs), shared read-only."""

from __future__ import annotations

from pathlib import Path

import pytest

from heur_learngene.cli import main
from learngene_core.testing import one_torch_thread  # noqa: F401  (session fixture: one torch thread)

COLLECTIVE_OVERRIDES: list[str] = []  # the preset as shipped (12 epochs per task)


@pytest.fixture(scope="session")
def collective_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("heur") / "run"
    assert main(["collective", "--config", "tiny", "--output-dir", str(out), *COLLECTIVE_OVERRIDES]) == 0
    return out
