"""The learngene story on real data, end to end: ancestry -> learngenes -> descendants vs scratch.

Used by the demo (tools/demo.py); tools/bench/learngene_cost.py measures this transfer over seeds against a tuned
scratch. The transfer is honest: the ancestry learns digits 0-4 (all their training images); the descendants
learn digits 5-9, which the ancestry never saw, from 20 images per class; scratch descendants get the same data,
budget and architecture.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from learngene_core.config import ExperimentConfig, load_config
from learngene_core.experiment import train
from learngene_core.learngene import ExtractConfig, Learngene, compare, extract
from learngene_core.learngene.descendants import CompareRow

QUIET = ["train.progress=false"]


@dataclass
class MethodResult:
    method: str
    learngene_parameters: int
    ancestry_parameters: int
    aux_test_accuracy: float
    rows: list[CompareRow]
    seconds: float


def load_methods() -> dict:
    """The installed learngene methods: {"tleg": (TLEG(), "tleg.configs"), ...}."""
    from sws import SWS
    from tleg import TLEG

    return {"tleg": (TLEG(), "tleg.configs"), "sws": (SWS(), "sws.configs")}


def train_ancestry(workdir: Path) -> tuple[Path, dict]:
    """Train the digits-ancestry preset (a 6-layer ViT on digits 0-4) into workdir/ancestry."""
    out = workdir / "ancestry"
    metrics = train(load_config("digits-ancestry", QUIET, ExperimentConfig), out)
    return out, metrics


def run_method(
    name: str, workdir: Path, ancestry: Path, depths: list[int], epochs: int | None
) -> MethodResult:
    """Extract the method's tiny learngene from the ancestry, then compare descendants with scratch."""
    method, package = load_methods()[name]
    start = time.perf_counter()
    cfg = load_config("tiny", [*QUIET, f"ancestry.run={ancestry}"], ExtractConfig, package)
    learngene, aux_metrics = extract(method, cfg, workdir / f"{name}-learngene")
    overrides = QUIET + ([f"train.epochs={epochs}"] if epochs else [])
    descendant_cfg = load_config("tiny-descendant", overrides, ExperimentConfig, package)
    rows = compare(
        Learngene.load(workdir / f"{name}-learngene"),
        method,
        descendant_cfg,
        depths,
        workdir / f"{name}-compare",
    )
    sizes = learngene.manifest["parameters"]
    return MethodResult(
        name,
        sizes["learngene"],
        sizes["ancestry"],
        aux_metrics["accuracy"],
        rows,
        time.perf_counter() - start,
    )
