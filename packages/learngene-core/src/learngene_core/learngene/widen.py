"""Net2WiderNet (Chen et al., ICLR 2016): widen one layer while keeping the network's function.

New units copy randomly chosen existing units (weights and bias); the next layer's incoming weights of every
copy and its source are divided by the number of copies, so the widened net computes the same function.
`noise` > 0 perturbs the new units' incoming weights (the reference adds 1e-3 noise to break symmetry).
"""

from __future__ import annotations

import copy
import math

import torch
from torch import nn

from ..errors import ModelError
from ..layered_models import VGGNet

Widenable = nn.Conv2d | nn.Linear


def _out_features(layer: Widenable) -> int:
    return layer.out_channels if isinstance(layer, nn.Conv2d) else layer.out_features


def net2wider(
    layer: Widenable,
    next_layer: Widenable,
    new_width: int,
    noise: float = 0.0,
    generator: torch.Generator | None = None,
) -> tuple[Widenable, Widenable]:
    """(widened `layer`, adapted `next_layer`): `layer` gets `new_width` outputs, `next_layer` as many inputs."""
    old = _out_features(layer)
    if new_width < old:
        raise ValueError(f"cannot widen {old} units to {new_width}")
    source = torch.randint(old, (new_width - old,), generator=generator)
    mapping = torch.cat([torch.arange(old), source])
    copies = torch.bincount(mapping, minlength=old).to(layer.weight.dtype)
    wide, after = copy.deepcopy(layer), copy.deepcopy(next_layer)
    with torch.no_grad():
        weight = layer.weight[mapping].clone()
        if noise:
            new = weight[old:]
            new += noise * torch.randn(new.shape, generator=generator, dtype=new.dtype)
        wide.weight = nn.Parameter(weight)
        if layer.bias is not None:
            wide.bias = nn.Parameter(layer.bias[mapping].clone())
        scale = (1.0 / copies[mapping]).view(1, -1, *([1] * (next_layer.weight.ndim - 2)))
        after.weight = nn.Parameter(next_layer.weight[:, mapping] * scale)
    if isinstance(wide, nn.Conv2d):
        wide.out_channels = new_width
    else:
        wide.out_features = new_width
    if isinstance(after, nn.Conv2d):
        after.in_channels = new_width
    else:
        after.in_features = new_width
    return wide, after


def widened_width(width: int, factor: float = 1.5) -> int:
    """The reference's rule: floor(factor * width)."""
    return int(math.floor(factor * width))


def widen_layer(
    model: nn.Module,
    index: int,
    factor: float = 1.5,
    noise: float = 0.0,
    generator: torch.Generator | None = None,
) -> int:
    """Widen layer `index` of a VGG (conv channels) or ViT (block MLP hidden units) in place; return the new width."""
    from timm.models.vision_transformer import VisionTransformer

    if isinstance(model, VGGNet):
        convs = model.features
        if not 0 <= index < len(convs):
            raise ModelError(f"layer {index} is outside the model's conv layers 0..{len(convs) - 1}")
        new = widened_width(convs[index].out_channels, factor)
        following = convs[index + 1] if index + 1 < len(convs) else model.pre_logits[0]
        wide, after = net2wider(convs[index], following, new, noise, generator)
        convs[index] = wide
        if index + 1 < len(convs):
            convs[index + 1] = after
        else:
            model.pre_logits[0] = after
        model.widths[index] = new
        return new
    if isinstance(model, VisionTransformer):
        if not 0 <= index < len(model.blocks):
            raise ModelError(f"layer {index} is outside the model's blocks 0..{len(model.blocks) - 1}")
        mlp = model.blocks[index].mlp
        new = widened_width(mlp.fc1.out_features, factor)
        mlp.fc1, mlp.fc2 = net2wider(mlp.fc1, mlp.fc2, new, noise, generator)
        return new
    raise ModelError(f"cannot widen a {type(model).__name__}: use learngene_vgg or a timm ViT")
