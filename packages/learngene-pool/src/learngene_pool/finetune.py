"""Stage 3: a descendant taken out of the pool (or its scratch twin) fine-tuned and evaluated by the core Trainer."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

import torch
from accelerate.utils import set_seed

from learngene_core import experiment
from learngene_core.config import ExperimentConfig
from learngene_core.errors import ConfigError
from learngene_core.trainer import FINAL_DIR

from .build import load_pool
from .descendant import DESCENDANT_CONFIG, FORMAT, VERSION, StitchedViT, build_descendant


def train_descendant(
    cfg: ExperimentConfig,
    pool_dir: str | Path,
    cfg_id: int,
    output_dir: str | Path,
    *,
    init: Literal["pool", "scratch"] = "pool",
    resume: bool = False,
) -> dict[str, float]:
    """Fine-tune descendant `cfg_id` (init "pool": its pool weights; "scratch": same architecture, fresh)."""
    pool, manifest = load_pool(pool_dir)
    pool.config(cfg_id)  # a bad id fails before any work
    experiment.check_output_dir(output_dir, cfg, resume)
    run = experiment.prepare_run(cfg)
    _check_input_shape(run, manifest)
    set_seed(cfg.seed)  # a fresh head (other classes) or a scratch twin from the config's seed
    model: StitchedViT = (
        pool.descendant(cfg_id) if init == "pool" else build_descendant(pool.descendant_spec(cfg_id))
    )
    if run.splits.num_classes != model.end.num_classes:
        model.reset_classifier(run.splits.num_classes)
    metrics = experiment.train(
        cfg, output_dir, resume=resume, model=model, run=run,
        metadata={"method": "learngene-pool", "pool": str(pool_dir), "config_id": cfg_id, "init": init},
    )  # fmt: skip
    config = {"format": FORMAT, "version": VERSION, "spec": model.spec, "config_id": cfg_id, "init": init}
    (Path(output_dir) / FINAL_DIR / DESCENDANT_CONFIG).write_text(json.dumps(config, indent=2))
    return metrics


def _check_input_shape(run: experiment.Run, manifest: dict) -> None:
    kwargs = manifest["instances"][0]["timm_kwargs"]
    shape = (kwargs["in_chans"], kwargs["img_size"], kwargs["img_size"])
    if tuple(run.splits.input_shape) != shape:
        raise ConfigError(
            f"data gives {tuple(run.splits.input_shape)} images but the pool's descendants take {shape} "
            "(set data.image_size / data.channels)"
        )


@torch.no_grad()
def evaluate_descendants(
    cfg: ExperimentConfig, pool_dir: str | Path, cfg_ids: list[int] | None = None, split: str = "test"
) -> list[dict[str, float]]:
    """Loss and accuracy of pool descendants as they are (no fine-tuning) on a split of the config's data."""
    pool, manifest = load_pool(pool_dir)
    ids = [pool.config(i).id for i in cfg_ids] if cfg_ids is not None else [c.id for c in pool.configs]
    run = experiment.prepare_run(cfg)
    _check_input_shape(run, manifest)
    classes = pool.instance_kwargs[0]["num_classes"]
    if run.splits.num_classes != classes:
        raise ConfigError(
            f"the pool predicts {classes} classes but data '{cfg.data.name}' has {run.splits.num_classes}; "
            "evaluate on the pool's own classes, or fine-tune with `train` (it fits a new head)"
        )
    loader = run.loaders[("train", "val", "test").index(split)]
    results = []
    for cfg_id in ids:
        losses, hits = [], []
        for inputs, targets in loader:
            loss, acc = run.task.per_sample(pool.run(cfg_id, inputs), targets)
            losses.append(loss)
            hits.append(acc)
        results.append(
            {
                "config_id": cfg_id,
                "loss": torch.cat(losses).mean().item(),
                "accuracy": torch.cat(hits).mean().item(),
            }
        )
    return results
