"""Extraction: distil a frozen ancestry into a learngene-generated aux net, then keep only the learngene."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from accelerate.utils import set_seed
from torch import nn

from .. import experiment
from ..checkpoint import load_model_weights, read_metadata
from ..config import ExperimentConfig, ModelConfig, from_dict, to_dict
from ..distill import Distiller
from ..errors import CheckpointError, ConfigError
from ..models import build_model, count_parameters
from .anatomy import HEAD_TENSORS, INHERITED_TENSORS, VIT_NAME, vit_arch
from .artifact import Learngene
from .auxnet import AuxNet
from .config import AncestryConfig, ExtractConfig
from .methods import LearngeneMethod

AUX_RUN = "aux-run"


def load_ancestry(
    cfg: AncestryConfig, num_classes: int, input_shape: tuple[int, ...]
) -> tuple[nn.Module, str]:
    """The ancestry model with its trained weights, and a one-line description of where it came from."""
    if cfg.run:
        run = Path(cfg.run)
        config_path = run / experiment.CONFIG_NAME
        if not config_path.is_file():
            raise CheckpointError(f"ancestry.run: {config_path} not found (train one with `learngene train`)")
        run_cfg = from_dict(
            ExperimentConfig, yaml.safe_load(config_path.read_text()), source=str(config_path)
        )
        weights = run / cfg.checkpoint
        meta = read_metadata(weights)
        model = build_model(
            run_cfg.model, num_classes=meta["num_classes"], input_shape=tuple(meta["input_shape"])
        )
        load_model_weights(model, weights)
        return model, f"{run_cfg.model.name} from {weights}"
    if cfg.model is None or not cfg.model.checkpoint:
        raise ConfigError(
            "set ancestry.run=<run dir of learngene train> or ancestry.model with model.checkpoint"
        )
    return build_model(
        cfg.model, num_classes=num_classes, input_shape=input_shape
    ), f"{cfg.model.name} from {cfg.model.checkpoint}"


def aux_template(cfg: ExtractConfig, depth: int, num_classes: int, input_shape: tuple[int, ...]) -> nn.Module:
    """The timm ViT the aux net is built on (average pooling, no class token, `depth` blocks)."""
    kwargs = {**cfg.model.kwargs, "depth": depth, "class_token": False, "global_pool": "avg"}
    return build_model(
        ModelConfig("timm", VIT_NAME, kwargs), num_classes=num_classes, input_shape=input_shape
    )


def extract(
    method: LearngeneMethod, cfg: ExtractConfig, output_dir: str | Path, *, resume: bool = False
) -> tuple[Learngene, dict[str, float]]:
    """Train the aux net of `method` by distillation and save the learngene in `output_dir`."""
    output_dir = Path(output_dir)
    if not resume and output_dir.is_dir() and any(output_dir.iterdir()):
        raise CheckpointError(f"output dir {output_dir} is not empty; pass --resume or choose another")
    spec = method.parse_spec(cfg.method)
    run = experiment.prepare_run(cfg)
    if run.splits.num_classes is None:
        raise ConfigError(
            f"data '{cfg.data.name}' is not image classification; learngenes are extracted on images"
        )
    teacher, source = load_ancestry(cfg.ancestry, run.splits.num_classes, run.splits.input_shape)
    set_seed(cfg.seed)  # the aux net and the fresh learngene are initialised from the config's seed
    template = aux_template(cfg, len(method.aux_layout(spec)), run.splits.num_classes, run.splits.input_shape)
    aux = AuxNet(template, method, spec)
    distiller = Distiller(teacher, run.task, cfg.distill, label_smoothing=cfg.train.label_smoothing)
    metrics = experiment.train(
        cfg, output_dir / AUX_RUN, resume=resume, model=aux, run=run, loss_fn=distiller,
        metadata={"method": method.name, "ancestry": source},
    )  # fmt: skip
    learngene = _collect(method, aux, spec, cfg, source, count_parameters(teacher), run.splits.description)
    learngene.save(output_dir)
    return learngene, metrics


def _collect(
    method: LearngeneMethod,
    aux: AuxNet,
    spec: dict[str, Any],
    cfg: ExtractConfig,
    source: str,
    ancestry_parameters: int,
    data: str,
) -> Learngene:
    state = aux.template.state_dict()
    tensors = {k: v.detach().clone() for k, v in aux.learngene_tensors().items()}
    tensors.update({f"inherited.{n}": state[n].clone() for n in INHERITED_TENSORS})
    tensors.update({n: state[n].clone() for n in HEAD_TENSORS})
    manifest = {
        "method": method.name,
        "formula_version": method.formula_version,
        "formula": method.formula,
        "arch": vit_arch(aux.template),
        "spec": spec,
        "aux_layout": aux.layout,
        "num_classes": aux.template.num_classes,
        "ancestry": {"source": source, "parameters": ancestry_parameters},
        "data": data,
        "config": to_dict(cfg),
    }
    learngene = Learngene(tensors, manifest)
    manifest["parameters"] = {"learngene": learngene.num_parameters(), "ancestry": ancestry_parameters}
    return learngene
