"""SNELL runs on learngene-core: a config with a `snell:` section, train / eval / merge of a run directory.

`train` builds the backbone (local checkpoint, fresh head), wraps it with `get_snell_model`, and runs the
core Trainer; the run directory is a normal learngene run plus `adapter/` (factors + head, safetensors + JSON).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from accelerate import PartialState
from torch import nn

from learngene_core import experiment
from learngene_core.checkpoint import load_model_weights, save_model_dir
from learngene_core.config import ExperimentConfig, load_config, save_config
from learngene_core.errors import CheckpointError, ConfigError
from learngene_core.experiment import Run, prepare_run
from learngene_core.trainer import Trainer

from .backbone import build_backbone
from .config import SnellConfig
from .model import SnellModel, get_snell_model

ADAPTER_DIR = "adapter"
PRESETS = "snell.configs"
CHECKPOINTS = {"final": "final", "best": "best", "last": "checkpoints/last"}


@dataclass
class SnellExperimentConfig(ExperimentConfig):
    """An ExperimentConfig (model = the backbone, model.checkpoint = its local weights) plus SNELL settings."""

    snell: SnellConfig = field(default_factory=SnellConfig)
    # the pretrained weights model.checkpoint should hold (presets name them; shown when it is missing)
    expected_checkpoint: str | None = None
    # tune a randomly initialised backbone when model.checkpoint is null (almost always a mistake: refused)
    random_backbone: bool = False


def check_backbone(cfg: SnellExperimentConfig) -> None:
    """Refuse to SNELL-tune random weights unless asked to: a forgotten --backbone must not cost a GPU day."""
    if cfg.model.checkpoint or cfg.random_backbone:
        return
    expects = f" This preset expects {cfg.expected_checkpoint}." if cfg.expected_checkpoint else ""
    raise ConfigError(
        f"model.checkpoint is not set, so SNELL would tune a randomly initialised {cfg.model.name}.{expects} "
        "Pass --backbone PATH (or model.checkpoint=PATH), or --random-backbone to tune random weights anyway"
    )


def load_snell_config(config: str | Path, overrides: list[str] | None = None) -> SnellExperimentConfig:
    return load_config(config, overrides, SnellExperimentConfig, PRESETS)


def build_base(cfg: ExperimentConfig, run: Run) -> nn.Module:
    """The backbone of `cfg`, sized for the run's data, with its pretrained weights and a fresh head."""
    return build_backbone(
        cfg.model, num_classes=run.splits.num_classes, input_shape=run.splits.input_shape, seed=cfg.seed
    )


def train(
    cfg: SnellExperimentConfig, output_dir: str | Path, *, resume: bool = False, run: Run | None = None
) -> tuple[dict[str, float], SnellModel]:
    """SNELL-tune the config's backbone; returns the final test metrics and the tuned model."""
    check_backbone(cfg)
    experiment.check_output_dir(output_dir, cfg, resume)
    run = run or prepare_run(cfg)
    model = get_snell_model(build_base(cfg, run), cfg.snell)
    counts = model.parameter_counts()
    metrics = experiment.train(
        cfg, output_dir, resume=resume, model=model, run=run, metadata={"method": "snell", "snell": counts}
    )
    if PartialState().is_main_process:
        model.save_pretrained(Path(output_dir) / ADAPTER_DIR, {"test": metrics})
    return metrics, model


def import_official(
    checkpoint: str | Path, cfg: SnellExperimentConfig, output_dir: str | Path
) -> dict[str, Any]:
    """Turn an official SNELL checkpoint into a run directory (config.yaml, final/, adapter/) that `snell eval`
    and `snell merge` read; the config gives the backbone layout, the data and snell.sparsity (init_thres)."""
    from .official import check_official_backbone
    from .official import import_official as load_official

    output_dir = Path(output_dir)
    if output_dir.exists() and (not output_dir.is_dir() or any(output_dir.iterdir())):
        raise CheckpointError(f"output dir {output_dir} is not empty; choose another")
    run = prepare_run(cfg)
    base = build_base(cfg, run)
    check_official_backbone(base)
    model = get_snell_model(base, cfg.snell)
    summary = load_official(model, checkpoint)
    if not summary["base_tensors"] and not cfg.model.checkpoint:
        raise CheckpointError(
            f"{checkpoint} holds only the tuned tensors and no backbone was given; pass --backbone PATH"
        )
    meta = {"method": "snell", "imported_from": str(checkpoint), **summary}
    save_config(cfg, output_dir / experiment.CONFIG_NAME)
    save_model_dir(model, output_dir / CHECKPOINTS["final"], meta)
    model.save_pretrained(output_dir / ADAPTER_DIR, meta)
    return meta


def _run_config(run_dir: Path, config: str | None, overrides: list[str]) -> SnellExperimentConfig:
    source = config or run_dir / experiment.CONFIG_NAME
    if config is None and not Path(source).is_file():
        raise CheckpointError(f"{run_dir} is not a snell run directory (no {experiment.CONFIG_NAME})")
    return load_snell_config(source, overrides)


def _weights(run_dir: Path, checkpoint: str) -> Path:
    path = run_dir / CHECKPOINTS[checkpoint] if checkpoint in CHECKPOINTS else Path(checkpoint)
    if not path.exists():
        raise CheckpointError(f"checkpoint not found: {path}")
    return path


def load_run(
    run_dir: str | Path,
    checkpoint: str = "final",
    config: str | None = None,
    overrides: list[str] | None = None,
) -> tuple[SnellExperimentConfig, Run, SnellModel]:
    """The config, data and trained SnellModel of a `snell train` run directory."""
    run_dir = Path(run_dir)
    cfg = _run_config(run_dir, config, overrides or [])
    weights = _weights(run_dir, checkpoint)
    run = prepare_run(cfg)
    model = get_snell_model(
        build_base(replace(cfg, model=replace(cfg.model, checkpoint=None)), run), cfg.snell
    )
    load_model_weights(model, weights)
    return cfg, run, model


def evaluate_model(model: nn.Module, cfg: ExperimentConfig, run: Run, split: str) -> dict[str, float]:
    """Loss and accuracy of `model` on a split of the run's data (through the core Trainer's evaluation)."""
    if split not in ("train", "val", "test"):
        raise ConfigError(f"unknown split '{split}'; use train, val or test")
    loader = run.loaders[("train", "val", "test").index(split)]
    train_cfg = replace(cfg.train, progress=False)
    trainer = Trainer(model, train_cfg, run.task, loader, output_dir=Path("."), seed=cfg.seed)
    return trainer.evaluate(trainer.train_loader, split)


def merge(run_dir: str | Path, output_dir: str | Path, checkpoint: str = "final") -> dict[str, Any]:
    """Fold the run's sparse updates into the backbone; write a plain timm checkpoint + config to `output_dir`.

    The merged model is checked against the unmerged one on a test batch before anything is written.
    """
    output_dir = Path(output_dir)
    if output_dir.exists() and any(output_dir.iterdir()):
        raise CheckpointError(f"output dir {output_dir} is not empty; choose another")
    cfg, run, model = load_run(run_dir, checkpoint)
    model.eval()
    inputs, _ = next(iter(run.loaders[2]))
    with torch.no_grad():
        before = model(inputs)
        plain = model.merge_and_unload()
        after = plain(inputs)
    diff = (before - after).abs().max().item()
    meta = {
        "model": {**vars(cfg.model), "checkpoint": None},
        "num_classes": run.splits.num_classes,
        "input_shape": list(run.splits.input_shape),
        "merged_from": str(run_dir),
        "max_abs_diff_vs_unmerged": diff,
    }
    save_model_dir(plain, output_dir, meta)
    plain_cfg = ExperimentConfig(
        model=replace(cfg.model, checkpoint=None), data=cfg.data, train=cfg.train, seed=cfg.seed
    )
    save_config(plain_cfg, output_dir / experiment.CONFIG_NAME)
    return meta
