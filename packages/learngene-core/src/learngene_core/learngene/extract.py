"""Extraction: distil a frozen ancestry into a learngene-generated aux net, then keep only the learngene."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from accelerate.utils import set_seed
from torch import nn

from .. import experiment
from ..checkpoint import load_model_weights, read_metadata
from ..config import ExperimentConfig, ModelConfig, from_dict, read_yaml_file, to_dict
from ..distill import Distiller
from ..errors import CheckpointError, ConfigError, first_line
from ..models import build_model, count_parameters
from .anatomy import VIT_NAME
from .artifact import Learngene
from .auxnet import AuxNet
from .backbones import HFCausalLM, backbone_of
from .config import AncestryConfig, ExtractConfig
from .methods import LearngeneMethod

AUX_RUN = "aux-run"


def load_ancestry(
    cfg: AncestryConfig, num_classes: int | None, input_shape: tuple[int, ...], vocab_size: int | None = None
) -> tuple[nn.Module, str]:
    """The ancestry model with its trained weights, and a one-line description of where it came from."""
    if cfg.run:
        run = Path(cfg.run)
        config_path = run / experiment.CONFIG_NAME
        if not config_path.is_file():
            raise CheckpointError(f"ancestry.run: {config_path} not found (train one with `learngene train`)")
        run_cfg = from_dict(
            ExperimentConfig, read_yaml_file(config_path, CheckpointError), source=str(config_path)
        )
        weights = run / cfg.checkpoint
        meta = read_metadata(weights)
        if num_classes is not None and meta.get("num_classes") not in (None, num_classes):
            raise ConfigError(
                f"the ancestry {run} predicts {meta['num_classes']} classes but the extraction data has "
                f"{num_classes}; distil on the ancestry's own classes (data.classes as in its config.yaml)"
            )
        model = build_model(
            run_cfg.model,
            num_classes=meta["num_classes"],
            input_shape=tuple(meta["input_shape"]),
            vocab_size=vocab_size,
        )
        load_model_weights(model, weights)
        return model, f"{run_cfg.model.name} from {weights}"
    if cfg.model is None or not cfg.model.checkpoint:
        raise ConfigError(
            "set ancestry.run=<run dir of learngene train> or ancestry.model with model.checkpoint"
        )
    return build_model(
        cfg.model, num_classes=num_classes, input_shape=input_shape, vocab_size=vocab_size
    ), f"{cfg.model.name} from {cfg.model.checkpoint}"


def aux_template(
    cfg: ExtractConfig,
    depth: int,
    num_classes: int | None,
    input_shape: tuple[int, ...],
    vocab_size: int | None = None,
) -> nn.Module:
    """The net the aux net is built on: a timm ViT (average pooling, no class token, `depth` blocks), or with
    model.source=hf a Hugging Face causal LM of `model.name` (e.g. llama, gpt2) and `model.kwargs`, `depth` layers.
    """
    if cfg.model.source == "hf":
        from transformers import AutoConfig

        key = HFCausalLM.depth_key(AutoConfig.for_model(cfg.model.name))
        model_cfg = ModelConfig("hf", cfg.model.name, {**cfg.model.kwargs, key: depth})
        return build_model(model_cfg, vocab_size=vocab_size)
    kwargs = {**cfg.model.kwargs, "depth": depth, "class_token": False, "global_pool": "avg"}
    return build_model(
        ModelConfig("timm", VIT_NAME, kwargs), num_classes=num_classes, input_shape=input_shape
    )


def extract(
    method: LearngeneMethod,
    cfg: ExtractConfig,
    output_dir: str | Path,
    *,
    resume: bool = False,
    start: Learngene | None = None,
) -> tuple[Learngene, dict[str, float]]:
    """Train the aux net of `method` by distillation and save the learngene in `output_dir`.

    With `start`, the aux net begins as that learngene's (its tensors, inherited parts and head), so a
    distillation can continue on other data or from another teacher (e.g. task after task along a stream).
    """
    output_dir = Path(output_dir)
    if output_dir.exists() and not output_dir.is_dir():
        raise CheckpointError(
            f"output dir {output_dir} is a file, not a directory; choose another --output-dir"
        )
    if not resume and any(p.name != AUX_RUN for p in output_dir.glob("*")):  # aux-run/ is checked by train
        raise CheckpointError(f"output dir {output_dir} is not empty; pass --resume or choose another")
    spec = method.parse_spec(cfg.method)
    run = experiment.prepare_run(cfg)
    splits = run.splits
    lm = cfg.model.source == "hf"
    if lm and splits.task != "causal-lm":
        raise ConfigError(f"data '{cfg.data.name}' is not text; an LM learngene is extracted on token data")
    if not lm and splits.num_classes is None:
        raise ConfigError(
            f"data '{cfg.data.name}' is not image classification; ViT learngenes are extracted on images "
            "(set model.source=hf for a causal LM)"
        )
    teacher, source = load_ancestry(cfg.ancestry, splits.num_classes, splits.input_shape, splits.vocab_size)
    set_seed(cfg.seed)  # the aux net and the fresh learngene are initialised from the config's seed
    depth = len(method.aux_layout(spec))
    template = aux_template(cfg, depth, splits.num_classes, splits.input_shape, splits.vocab_size)
    aux = AuxNet(template, method, spec) if start is None else _aux_from(start, template, method, spec)
    distiller = Distiller(teacher, run.task, cfg.distill, label_smoothing=cfg.train.label_smoothing)
    metrics = experiment.train(
        cfg, output_dir / AUX_RUN, resume=resume, model=aux, run=run, loss_fn=distiller,
        metadata={"method": method.name, "ancestry": source},
    )  # fmt: skip
    learngene = _collect(method, aux, spec, cfg, source, count_parameters(teacher), run.splits.description)
    learngene.save(output_dir)
    return learngene, metrics


def _aux_from(start: Learngene, template: nn.Module, method: LearngeneMethod, spec: dict[str, Any]) -> AuxNet:
    """The aux net on `template` whose learngene, inherited parts and head are `start`'s."""
    backbone = backbone_of(template)
    heads = set(backbone.head_names(template))
    parts = {n.removeprefix("inherited."): t for n, t in start.tensors.items() if n.startswith("inherited.")}
    parts.update({n: t for n, t in start.tensors.items() if n in heads})
    genes = {n: t for n, t in start.tensors.items() if not n.startswith("inherited.") and n not in heads}
    aux = AuxNet(template, method, spec, backbone=backbone)
    mine = aux.learngene_tensors()
    misfits = sorted(set(genes) ^ set(mine)) + [
        n for n in mine if n in genes and genes[n].shape != mine[n].shape
    ]
    if misfits:
        raise ConfigError(f"the start learngene does not fit this aux net: tensor {misfits[0]}")
    try:
        template.load_state_dict(parts, strict=False)
    except RuntimeError as error:
        raise ConfigError(f"the start learngene does not fit this aux net: {first_line(error)}") from None
    with torch.no_grad():
        for name, tensor in mine.items():
            tensor.copy_(genes[name])
    return aux


def _collect(
    method: LearngeneMethod,
    aux: AuxNet,
    spec: dict[str, Any],
    cfg: ExtractConfig,
    source: str,
    ancestry_parameters: int,
    data: str,
) -> Learngene:
    state, backbone = aux.template.state_dict(), aux.backbone
    tensors = {k: v.detach().clone() for k, v in aux.learngene_tensors().items()}
    tensors.update({f"inherited.{n}": state[n].clone() for n in backbone.inherited_names(aux.template)})
    tensors.update({n: state[n].clone() for n in backbone.head_names(aux.template)})
    manifest = {
        "method": method.name,
        "backbone": backbone.name,
        "formula_version": method.formula_version,
        "formula": method.formula,
        "arch": backbone.arch(aux.template),
        "spec": spec,
        "aux_layout": aux.layout,
        "num_classes": getattr(aux.template, "num_classes", None),
        "ancestry": {"source": source, "parameters": ancestry_parameters},
        "data": data,
        "config": to_dict(cfg),
    }
    learngene = Learngene(tensors, manifest)
    manifest["parameters"] = {"learngene": learngene.num_parameters(), "ancestry": ancestry_parameters}
    return learngene
