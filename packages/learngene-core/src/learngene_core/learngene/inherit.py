"""Learngenes of whole ancestry layers (Heur-/Auto-Learngene): pick layers, save them, inherit them.

A layer learngene is a core `Learngene` whose tensors are some ancestry layers exactly as trained (keyed by the
ancestry's state_dict names, e.g. `features.11.weight` or `blocks.5.mlp.fc1.weight`) and whose manifest holds
the ancestry's architecture (`arch`: the timm/HF model config that rebuilds it) and the chosen layers with the
scores that chose them (`spec`). A descendant is a model of that architecture (a config may change what does
not touch the inherited layers) in which the learngene layers are copied, every other tensor is freshly
initialised and the head is new; its inheritance map has the form `tleg expand` prints.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

import torch
from accelerate.utils import set_seed
from torch import nn

from ..config import ModelConfig, from_dict
from ..errors import ConfigError, ModelError
from ..layered_models import VGGNet
from ..models import build_model
from .artifact import Learngene
from .backbones import HFCausalLM

PLACEMENTS = ("same", "top")


def layer_prefixes(model: nn.Module) -> list[str]:
    """The state_dict prefixes of the layers a learngene picks from: VGG convs, ViT blocks or LM decoder layers."""
    from timm.models.vision_transformer import VisionTransformer

    if isinstance(model, VGGNet):
        return [f"features.{i}" for i in range(len(model.features))]
    if isinstance(model, VisionTransformer):
        return [f"blocks.{i}" for i in range(len(model.blocks))]
    backbone = HFCausalLM()
    try:
        backbone.check(model, "the model")
    except ModelError:
        raise ModelError(
            f"a layer learngene needs learngene_vgg, a timm ViT or a HF causal LM, got {type(model).__name__}"
        ) from None
    path = backbone.layers_path(model)
    return [f"{path}.{i}" for i in range(len(backbone.layers(model)))]


def layer_modules(model: nn.Module) -> list[nn.Module]:
    """The modules behind `layer_prefixes`, in order."""
    return [model.get_submodule(prefix) for prefix in layer_prefixes(model)]


def width_kwargs(model: nn.Module) -> dict[str, Any]:
    """Constructor kwargs that rebuild a widened model's widths (VGG conv channels, ViT per-block MLP hidden)."""
    from timm.models.vision_transformer import VisionTransformer

    if isinstance(model, VGGNet):
        return {"widths": list(model.widths)}
    if isinstance(model, VisionTransformer):
        hidden = [block.mlp.fc1.out_features for block in model.blocks]
        if len(set(hidden)) > 1:
            return {"mlp_hidden": hidden}  # vit_learngene only
        return {"mlp_ratio": hidden[0] / model.embed_dim}  # any timm ViT
    return {}


def check_layer_indices(layers: list[int], num_layers: int, what: str = "layer") -> None:
    """Refuse an empty, repeated or out-of-range list of ancestry layer indices."""
    if not layers:
        raise ConfigError(f"choose at least one {what} (the ancestry has layers 0..{num_layers - 1})")
    for index in layers:
        if not 0 <= index < num_layers:
            raise ConfigError(f"{what} {index} is outside the ancestry, which has layers 0..{num_layers - 1}")
    if len(set(layers)) != len(layers):
        raise ConfigError(f"{what}s {layers} repeat an index")


def top_k(scores: list[float], k: int, largest: bool) -> list[int]:
    """Indices of the k largest (or smallest) scores, ties going to the later layer; in layer order."""
    if not 1 <= k <= len(scores):
        raise ConfigError(f"k={k} must be between 1 and the ancestry's layer count {len(scores)}")
    sign = -1.0 if largest else 1.0
    return sorted(sorted(range(len(scores)), key=lambda i: (sign * scores[i], -i))[:k])


def make_layer_learngene(
    method: str,
    ancestry: nn.Module,
    model_cfg: ModelConfig,
    layers: list[int],
    spec: dict[str, Any],
    extra: dict[str, Any] | None = None,
) -> Learngene:
    """A learngene holding ancestry `layers` (copied), the config that rebuilds the ancestry, and `spec`."""
    prefixes = layer_prefixes(ancestry)
    check_layer_indices(layers, len(prefixes))
    state = ancestry.state_dict()
    tensors = {}
    for index in layers:
        prefix = prefixes[index] + "."
        tensors.update({k: v.detach().clone() for k, v in state.items() if k.startswith(prefix)})
    arch = asdict(model_cfg)
    arch["checkpoint"] = None
    arch["kwargs"] = {**arch["kwargs"], **width_kwargs(ancestry)}
    manifest = {
        "method": method,
        "backbone": "layers",
        "arch": arch,
        "spec": {**spec, "layers": list(layers)},
        "layer_prefixes": prefixes,
        "num_layers": len(prefixes),
        **(extra or {}),
    }
    learngene = Learngene(tensors, manifest)
    manifest["parameters"] = {
        "learngene": learngene.num_parameters(),
        "ancestry": sum(p.numel() for p in ancestry.parameters()),
    }
    return learngene


def descendant_model_config(learngene: Learngene, model: ModelConfig | None = None) -> ModelConfig:
    """The ancestry's model config, with `model.kwargs` of a descendant config on top (same model name only)."""
    arch = from_dict(ModelConfig, dict(learngene.arch), source="learngene manifest", prefix="arch.")
    if model is None:
        return arch
    if model.source != arch.source or model.name != arch.name:
        raise ModelError(
            f"architecture mismatch: the descendant config asks for {model.source} model '{model.name}' but the "
            f"{learngene.method} learngene comes from a {arch.source} '{arch.name}' ancestry"
        )
    return ModelConfig(arch.source, arch.name, {**arch.kwargs, **model.kwargs}, None)


def placement_of(learngene: Learngene, num_layers: int, placement: str = "same") -> dict[int, int]:
    """Descendant layer -> ancestry layer: `same` keeps each learngene layer's index, `top` stacks them last."""
    layers = learngene.spec["layers"]
    if placement == "same":
        mapping = {m: m for m in layers}
    elif placement == "top":
        if len(layers) > num_layers:
            raise ConfigError(
                f"{len(layers)} learngene layers do not fit a descendant of {num_layers} layers"
            )
        mapping = {num_layers - len(layers) + j: m for j, m in enumerate(sorted(layers))}
    else:
        raise ConfigError(f"unknown placement '{placement}'; use one of {', '.join(PLACEMENTS)}")
    outside = [n for n in mapping if n >= num_layers]
    if outside:
        raise ConfigError(
            f"learngene layer {mapping[outside[0]]} is outside the descendant's layers 0..{num_layers - 1} "
            "(use placement=top or a deeper descendant)"
        )
    return mapping


def inherit_layers(model: nn.Module, learngene: Learngene, mapping: dict[int, int]) -> dict[str, str]:
    """Copy ancestry layer `mapping[n]` into descendant layer n; every other tensor stays as initialised.

    Returns the inheritance map (`copied` or `fresh` per tensor). A shape difference is an architecture mismatch.
    """
    prefixes, sources = layer_prefixes(model), learngene.manifest["layer_prefixes"]
    state = model.state_dict()
    inheritance = {name: "fresh" for name in state}
    for n, m in sorted(mapping.items()):
        if not 0 <= m < len(sources) or m not in learngene.spec["layers"]:
            raise ConfigError(
                f"ancestry layer {m} is not in the learngene (layers {learngene.spec['layers']} of "
                f"0..{len(sources) - 1})"
            )
        src, dst = sources[m] + ".", prefixes[n] + "."
        names = [k[len(dst) :] for k in state if k.startswith(dst)]
        for name in names:
            source = learngene.tensors.get(src + name)
            if source is None or source.shape != state[dst + name].shape:
                got = "missing" if source is None else tuple(source.shape)
                raise ModelError(
                    f"architecture mismatch: descendant tensor {dst + name} has shape "
                    f"{tuple(state[dst + name].shape)}, ancestry layer {m} has {got}"
                )
            state[dst + name] = source.clone()
            inheritance[dst + name] = "copied"
    model.load_state_dict(state, strict=True)
    return inheritance


def build_layer_descendant(
    learngene: Learngene,
    init: str,
    *,
    num_classes: int | None,
    input_shape: tuple[int, ...] | None,
    vocab_size: int | None = None,
    model: ModelConfig | None = None,
    placement: str = "same",
    seed: int = 0,
) -> tuple[nn.Module, dict[str, str], dict[int, int]]:
    """A descendant (`init` "learngene") or a same-shape randomly initialised model (`init` "random")."""
    if init not in ("learngene", "random"):
        raise ConfigError(f"unknown init '{init}'; use learngene or random")
    set_seed(seed)
    cfg = descendant_model_config(learngene, model)
    descendant = build_model(cfg, num_classes=num_classes, input_shape=input_shape, vocab_size=vocab_size)
    if init == "random":
        return descendant, {name: "fresh" for name in descendant.state_dict()}, {}
    mapping = placement_of(learngene, len(layer_prefixes(descendant)), placement)
    return descendant, inherit_layers(descendant, learngene, mapping), mapping


def format_ranking(title: str, score_name: str, choice: dict[str, Any], prefixes: list[str]) -> str:
    """A markdown table of ranked layers (`choice`: ranking, scores, layers) with the learngene marked."""
    lines = [title, f"| rank | layer | module | {score_name} | learngene |", "|---|---|---|---|---|"]
    for rank, layer in enumerate(choice["ranking"], 1):
        mark = "yes" if layer in choice["layers"] else ""
        lines.append(f"| {rank} | {layer} | {prefixes[layer]} | {choice['scores'][layer]:.4g} | {mark} |")
    return "\n".join(lines)


def learngene_summary(learngene: Learngene, directory: Any) -> str:
    """One line: the chosen layers, their size against the ancestry, where they were saved."""
    sizes = learngene.manifest["parameters"]
    return (
        f"learngene: layers {learngene.spec['layers']}, {sizes['learngene']:,} parameters "
        f"({sizes['learngene'] / sizes['ancestry']:.1%} of the ancestry's {sizes['ancestry']:,}); saved to {directory}"
    )


def describe_mapping(mapping: dict[int, int]) -> str:
    """`descendant layer <- ancestry layer` pairs, one line."""
    return ", ".join(f"layer {n} <- ancestry layer {m}" for n, m in sorted(mapping.items())) or "none"


def layer_snapshots(model: nn.Module) -> list[torch.Tensor]:
    """Per layer, a detached flat copy of all its parameters (to measure how much a layer moved)."""
    return [
        torch.cat([p.detach().reshape(-1) for p in module.parameters()]).clone()
        for module in layer_modules(model)
    ]
