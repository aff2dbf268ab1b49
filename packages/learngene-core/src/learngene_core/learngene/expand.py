"""Expansion: a learngene becomes an ordinary timm ViT or Hugging Face causal LM of any depth, with an inheritance map.

Every tensor of the descendant is accounted for: `expanded` (generated from the learngene), `copied`
(inherited as is), `resized` (position embedding interpolated / patch embedding resampled to a new image or
patch size) or `fresh` (initialised by timm, e.g. the new task's head). The model is loaded with
strict=True, so nothing is silently left out.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import timm
import torch
from timm.layers import resample_abs_pos_embed, resample_patch_embed
from timm.models.vision_transformer import VisionTransformer
from torch import nn

from ..checkpoint import WEIGHTS_NAME, save_weights, write_dir_atomically
from ..errors import CheckpointError, ConfigError
from .anatomy import BLOCK_TENSORS, HEAD_TENSORS, VIT_NAME
from .artifact import Learngene
from .backbones import TIMM_VIT, Backbone, backbone_named
from .methods import LearngeneMethod

DESCENDANT_CONFIG = "config.json"
INHERITANCE_NAME = "inheritance.json"


def descendant_kwargs(
    learngene: Learngene,
    depth: int,
    num_classes: int,
    img_size: int | None = None,
    patch_size: int | None = None,
    regularisation: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """`timm.create_model(VIT_NAME, **kwargs)` arguments of a descendant (the manifest's architecture).

    `regularisation`: shape-free ViT arguments such as drop_path_rate (see `Learngene.descendant_model_kwargs`).
    """
    kwargs = dict(learngene.arch)
    kwargs.update(regularisation or {})
    kwargs.update(depth=depth, num_classes=num_classes)
    if img_size is not None:
        kwargs["img_size"] = img_size
    if patch_size is not None:
        kwargs["patch_size"] = patch_size
    return kwargs


def expand(
    learngene: Learngene,
    method: LearngeneMethod,
    layout: list[int],
    num_classes: int | None = None,
    *,
    img_size: int | None = None,
    patch_size: int | None = None,
    load_head: bool = False,
    regularisation: dict[str, Any] | None = None,
) -> tuple[nn.Module, dict[str, str]]:
    """Build the descendant of `layout` (one entry per layer) and return it with its inheritance map.

    A ViT learngene gives a timm VisionTransformer (`num_classes` sizes its new head); an LM learngene gives a
    Hugging Face causal LM whose embeddings, final norm and LM head are copied (`num_classes`, `img_size`,
    `patch_size` and `load_head` do not apply). `regularisation` sets shape-free settings: drop_path_rate/drop_rate/...
    of the ViT, the LM config's dropouts (`Learngene.regularisation_keys`).
    """
    method.check_layout(layout, learngene.spec)
    backbone = backbone_named(learngene.backbone)
    if backbone.name != TIMM_VIT:
        return _expand_lm(learngene, method, layout, backbone, regularisation)
    if num_classes is None:
        num_classes = learngene.manifest["num_classes"]
    kwargs = descendant_kwargs(learngene, len(layout), num_classes, img_size, patch_size, regularisation)
    model = timm.create_model(VIT_NAME, pretrained=False, **kwargs)
    state = model.state_dict()
    inheritance = {name: "fresh" for name in state}
    _expand_layers(learngene, method, layout, state, inheritance, "blocks", BLOCK_TENSORS)
    for name, how in _inherited(learngene, model).items():
        state[name], inheritance[name] = how
    if load_head:
        for name in HEAD_TENSORS:
            source = learngene.tensors.get(f"head.{name.split('.')[-1]}")
            if source is None or source.shape != state[name].shape:
                raise ConfigError(
                    f"cannot copy the head: the learngene's head does not fit {num_classes} classes (drop load_head)"
                )
            state[name], inheritance[name] = source.clone(), "copied"
    _check_fits(model, state)
    model.load_state_dict(state, strict=True)
    return model, inheritance


def _check_fits(model: nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Refuse a state whose tensors do not fit `model` (a damaged or edited learngene file): a CheckpointError
    naming the tensor, not load_state_dict's size-mismatch traceback."""
    own = model.state_dict()
    for name, tensor in state.items():
        if tensor.shape != own[name].shape:
            raise CheckpointError(
                f"the learngene gives {name} of shape {tuple(tensor.shape)}, but its manifest's architecture needs "
                f"{tuple(own[name].shape)}: the learngene file is damaged or was edited; extract it again"
            )


def _expand_lm(
    learngene: Learngene,
    method: LearngeneMethod,
    layout: list[int],
    backbone: Backbone,
    regularisation: dict[str, Any] | None = None,
) -> tuple[nn.Module, dict[str, str]]:
    """A causal LM of len(layout) layers: layers generated, every other tensor copied from the learngene."""
    model = backbone.create(learngene.arch, len(layout), **(regularisation or {}))
    state = model.state_dict()
    inheritance = {name: "fresh" for name in state}
    prefix, names = backbone.layers_path(model), backbone.layer_names(model)
    _expand_layers(learngene, method, layout, state, inheritance, prefix, names)
    for name in backbone.inherited_names(model):
        source = learngene.tensors.get(f"inherited.{name}")
        if source is None or source.shape != state[name].shape:
            raise ConfigError(
                f"the learngene has no inherited tensor '{name}' of shape {tuple(state[name].shape)}"
            )
        state[name], inheritance[name] = source.clone(), "copied"
    _check_fits(model, state)
    model.load_state_dict(state, strict=True)
    return model, inheritance


def _expand_layers(
    learngene: Learngene,
    method: LearngeneMethod,
    layout: list[int],
    state: dict[str, torch.Tensor],
    inheritance: dict[str, str],
    prefix: str,
    names: tuple[str, ...],
) -> None:
    """Write every layer's tensors, generated from the learngene, into `state` and mark them expanded.

    Every learngene tensor of a layer (`<group>.<name>`) must have the shape of that tensor in a layer of the
    descendant: generating from a misshaped one (a damaged file) would broadcast silently into a wrong layer.
    """
    needed = {name: tuple(state[f"{prefix}.0.{name}"].shape) for name in names} if layout else {}
    for key, tensor in learngene.tensors.items():
        name = key.partition(".")[2]
        if (
            not key.startswith(("inherited.", "head."))
            and name in needed
            and tuple(tensor.shape) != needed[name]
        ):
            raise CheckpointError(
                f"learngene tensor '{key}' has shape {tuple(tensor.shape)}, but its manifest's architecture needs "
                f"{needed[name]}: the learngene file is damaged or was edited; extract it again"
            )
    for i in range(len(layout)):
        layer = method.layer_tensors(learngene.tensors, i, layout, learngene.spec)
        for name in names:
            state[f"{prefix}.{i}.{name}"] = layer[name].detach().clone()
            inheritance[f"{prefix}.{i}.{name}"] = "expanded"


def _inherited(learngene: Learngene, model: VisionTransformer) -> dict[str, tuple[torch.Tensor, str]]:
    """Patch/position embeddings and the final norm, resized where the descendant's geometry differs."""
    arch, out = learngene.arch, {}
    src = {
        k.removeprefix("inherited."): v for k, v in learngene.tensors.items() if k.startswith("inherited.")
    }
    patch = model.patch_embed.patch_size
    weight = src["patch_embed.proj.weight"]
    if tuple(weight.shape[-2:]) != tuple(patch):
        out["patch_embed.proj.weight"] = (resample_patch_embed(weight, list(patch)), "resized")
    else:
        out["patch_embed.proj.weight"] = (weight.clone(), "copied")
    out["patch_embed.proj.bias"] = (src["patch_embed.proj.bias"].clone(), "copied")
    grid = list(model.patch_embed.grid_size)
    old_grid = [arch["img_size"] // arch["patch_size"]] * 2
    pos = src["pos_embed"]
    if grid != old_grid:
        out["pos_embed"] = (resample_abs_pos_embed(pos, grid, old_grid, num_prefix_tokens=0), "resized")
    else:
        out["pos_embed"] = (pos.clone(), "copied")
    for name in ("fc_norm.weight", "fc_norm.bias"):
        out[name] = (src[name].clone(), "copied")
    return out


def summarize_inheritance(inheritance: dict[str, str]) -> str:
    """One line: how many tensors were expanded, copied, resized and freshly initialised."""
    counts = Counter(inheritance.values())
    parts = [f"{counts[k]} {k}" for k in ("expanded", "copied", "resized", "fresh") if counts[k]]
    fresh = sorted(k for k, v in inheritance.items() if v == "fresh")
    return (
        f"{len(inheritance)} tensors: "
        + ", ".join(parts)
        + (f" (fresh: {', '.join(fresh)})" if fresh else "")
    )


def save_descendant(
    model: VisionTransformer,
    kwargs: dict[str, Any],
    inheritance: dict[str, str],
    directory: str | Path,
    extra=None,
) -> Path:
    """Write a plain timm checkpoint: model.safetensors, config.json (create_model arguments), inheritance.json."""

    def fill(tmp: Path) -> None:
        save_weights(model, tmp / WEIGHTS_NAME)
        config = {"timm_model": VIT_NAME, "kwargs": kwargs, **(extra or {})}
        (tmp / DESCENDANT_CONFIG).write_text(json.dumps(config, indent=2))
        (tmp / INHERITANCE_NAME).write_text(json.dumps(inheritance, indent=2))

    return write_dir_atomically(Path(directory), fill)


def load_descendant(directory: str | Path) -> VisionTransformer:
    """Rebuild a saved descendant with timm alone (create_model + strict load), as a user would."""
    from ..checkpoint import load_model_weights

    directory = Path(directory)
    config = json.loads((directory / DESCENDANT_CONFIG).read_text())
    model = timm.create_model(config["timm_model"], pretrained=False, **config["kwargs"])
    load_model_weights(model, directory / WEIGHTS_NAME, strict=True)
    return model
