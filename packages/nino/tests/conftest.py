"""Session fixtures for the pipeline tests: a tiny trajectory dataset (`nino collect`) and a tiny NiNo
meta-trained on it (`nino metatrain`), both produced once through the console script, in-process.

Tiny models run faster on one torch thread than on several, so the whole session uses one.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from learngene_core.testing import one_torch_thread  # noqa: F401  (session fixture: one torch thread)
from nino.cli import main as nino_main

COLLECT_OVERRIDES = ["tasks=[mlp-digits, cnn-digits-16]", "seeds=[0]", "steps=200", "snapshot_every=10"]
METATRAIN_OVERRIDES = ["steps=12", "log_every=4", "checkpoint_every=6", "progress=false"]


@pytest.fixture(scope="session")
def trajectory_dir(tmp_path_factory) -> Path:
    """A `nino collect` dataset: mlp-digits and cnn-digits-16, seed 0, 200 steps, a snapshot every 10."""
    out = tmp_path_factory.mktemp("traj") / "data"
    code = nino_main(["collect", "--config", "collect-tiny", "--output", str(out), *COLLECT_OVERRIDES])
    assert code == 0, "nino collect failed"
    return out


@pytest.fixture(scope="session")
def nino_ckpt(tmp_path_factory, trajectory_dir) -> Path:
    """A tiny NiNo checkpoint meta-trained by `nino metatrain` on `trajectory_dir`."""
    out = tmp_path_factory.mktemp("meta") / "run"
    argv = ["metatrain", "--config", "metatrain-tiny", "--data", str(trajectory_dir), "--output", str(out)]
    code = nino_main([*argv, *METATRAIN_OVERRIDES])
    assert code == 0, "nino metatrain failed"
    return out / "nino.pt"
