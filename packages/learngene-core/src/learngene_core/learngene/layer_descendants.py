"""Descendants of a layer learngene (Heur-/Auto-Learngene): the config, `expand` and `train`, shared by both CLIs
(whose parsers `layer_cli.py` builds without torch)."""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from .. import experiment
from ..checkpoint import WEIGHTS_NAME, save_weights, write_dir_atomically
from ..config import DataConfig, ExperimentConfig, ModelConfig, TrainConfig, load_config
from ..errors import ConfigError
from ..models import count_parameters
from .artifact import Learngene
from .expand import INHERITANCE_NAME, summarize_inheritance
from .inherit import build_layer_descendant, descendant_model_config, describe_mapping

DESCENDANT_CONFIG = "config.json"


@dataclass
class LayerDescendantConfig:
    """A descendant trained on a new task: learngene layers inherited, every other tensor fresh, a new head."""

    # The ancestry's architecture is used; `model.kwargs` given here override it (the model name must match).
    model: ModelConfig | None = None
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    placement: Literal["same", "top"] = (
        "same"  # same: layer m -> layer m; top: learngene layers last, in order
    )
    seed: int = 0

    def experiment(self, learngene: Learngene) -> ExperimentConfig:
        """The core experiment config of this descendant (the model resolved against the learngene)."""
        return ExperimentConfig(
            descendant_model_config(learngene, self.model), self.data, self.train, self.seed
        )


def run_expand(args: argparse.Namespace, method: str) -> None:
    learngene = Learngene.load(args.learngene, method)
    if args.num_classes < 1:
        raise ConfigError(f"--num-classes must be >= 1, got {args.num_classes}")
    out = Path(args.output_dir)
    if out.exists() and any(out.iterdir()):
        raise ConfigError(f"output dir {out} is not empty; choose another")
    in_chans = args.in_chans or learngene.manifest.get("input_shape", [3])[0]
    shape = (in_chans, *learngene.manifest.get("input_shape", [3, 32, 32])[1:])
    model, inheritance, mapping = build_layer_descendant(
        learngene, "learngene", num_classes=args.num_classes, input_shape=shape, placement=args.placement
    )
    cfg = descendant_model_config(learngene)
    kwargs = {**cfg.kwargs, "num_classes": args.num_classes, "in_chans": in_chans}

    def fill(tmp: Path) -> None:
        save_weights(model, tmp / WEIGHTS_NAME)
        config = {"timm_model": cfg.name, "kwargs": kwargs, "method": method, "placement": mapping}
        (tmp / DESCENDANT_CONFIG).write_text(json.dumps(config, indent=2))
        (tmp / INHERITANCE_NAME).write_text(json.dumps(inheritance, indent=2))

    write_dir_atomically(out, fill)
    print(f"descendant: {cfg.name}, {count_parameters(model):,} parameters; {describe_mapping(mapping)}")
    print(f"inheritance: {summarize_inheritance(inheritance)}")
    print(
        f"saved to {out}: timm.create_model('{cfg.name}', **kwargs) of {out / DESCENDANT_CONFIG} + strict load"
    )


def run_train(args: argparse.Namespace, method: str, package: str, overrides: list[str]) -> dict[str, Any]:
    cfg = load_config(args.config, overrides, LayerDescendantConfig, package)
    learngene = Learngene.load(args.learngene, method)
    metrics, how = train_descendant(learngene, cfg, args.init, args.output_dir, resume=args.resume)
    print(json.dumps({"split": "test", "init": args.init, **metrics}))
    return metrics


def train_descendant(
    learngene: Learngene,
    cfg: LayerDescendantConfig,
    init: str,
    output_dir: str | Path,
    *,
    resume: bool = False,
    quiet: bool = False,
) -> tuple[dict[str, float], str]:
    """Train a descendant (`init` learngene or random) on `cfg.data`; returns its test metrics and a summary."""
    exp = cfg.experiment(learngene)
    experiment.check_output_dir(output_dir, exp, resume)
    run = experiment.prepare_run(exp)
    model, inheritance, mapping = build_layer_descendant(
        learngene, init, num_classes=run.splits.num_classes, input_shape=run.splits.input_shape,
        vocab_size=run.splits.vocab_size, model=cfg.model, placement=cfg.placement, seed=cfg.seed,
    )  # fmt: skip
    how = f"{init}: {describe_mapping(mapping)}; inheritance: {summarize_inheritance(inheritance)}"
    if not quiet:
        print(how)
    meta = {"init": init, "placement": {str(n): m for n, m in mapping.items()}, "learngene": learngene.method}
    metrics = experiment.train(exp, output_dir, resume=resume, model=model, run=run, metadata=meta)
    return metrics, how
