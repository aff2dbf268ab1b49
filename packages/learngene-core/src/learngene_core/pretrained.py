"""Pre-trained backbones: a timm model built from the config, with local pretrained weights and no classifier.

Weights come from a local file only (safetensors, a torch state dict, or a JAX `.npz` for timm ViTs); the
model's own `checkpoint_filter_fn` (timm) adapts original-repository layouts and position-embedding sizes.
The classifier is never loaded: the downstream task trains its own head. A method whose frozen backbone must see
the image size it was pre-trained on passes `resize_position_embeddings=False`: position embeddings of another
grid are then refused by name (both sizes, the key to change) instead of resampled. `package:NAME` names a file shipped
in `<package>/assets/` of the method package that asks (e.g. snell's tiny digits ViT).
"""

from __future__ import annotations

import math
import sys
from dataclasses import replace
from importlib import resources
from pathlib import Path

import torch
from accelerate.utils import set_seed
from torch import nn

from .checkpoint import read_state_dict
from .config import ModelConfig
from .errors import CheckpointError
from .models import build_model

PACKAGE_PREFIX = "package:"


def resolve_checkpoint(path: str, package: str | None = None) -> Path:
    """A filesystem path for `path`, resolving `package:NAME` to the file shipped in `<package>/assets/`."""
    if path.startswith(PACKAGE_PREFIX):
        name = path[len(PACKAGE_PREFIX) :]
        if package is None:
            raise CheckpointError(f"'{path}' names a shipped checkpoint, but no package ships assets here")
        asset = resources.files(package) / "assets" / name
        if not asset.is_file():
            raise CheckpointError(f"no shipped checkpoint '{name}' in {package}/assets")
        return Path(str(asset))
    return Path(path).expanduser()


def build_backbone(
    cfg: ModelConfig,
    *,
    num_classes: int,
    input_shape: tuple[int, ...],
    seed: int,
    package: str | None = None,
    resize_position_embeddings: bool = True,
) -> nn.Module:
    """The timm model of `cfg` for this data, with `cfg.checkpoint`'s weights (all but the classifier)."""
    set_seed(seed)
    model = build_model(replace(cfg, checkpoint=None), num_classes=num_classes, input_shape=input_shape)
    if cfg.checkpoint:
        path = resolve_checkpoint(cfg.checkpoint, package)
        load_backbone_weights(model, path, resize_position_embeddings)
    return model


def classifier_prefixes(model: nn.Module) -> tuple[str, ...]:
    if not hasattr(model, "get_classifier"):
        return ()
    head = model.get_classifier()
    return tuple(f"{n}." for n, m in model.named_modules() if m is head and n)


def load_backbone_weights(model: nn.Module, path: Path, resize_position_embeddings: bool = True) -> None:
    """Load every weight but the classifier from `path`; CheckpointError naming the file if it does not fit.
    Position embeddings of another grid are resampled by timm, or refused with `resize_position_embeddings=False`.
    """
    if not path.is_file():
        raise CheckpointError(f"backbone checkpoint not found: {path}")
    if path.suffix == ".npz":
        if not resize_position_embeddings:
            _check_position_grid(model, _npz_position_embedding_shape(path), path)
        if not hasattr(model, "load_pretrained"):
            raise CheckpointError(
                f"{path}: .npz checkpoints load into timm ViTs only, not {type(model).__name__}"
            )
        head = {k: v.clone() for k, v in model.get_classifier().state_dict().items()}
        try:
            model.load_pretrained(str(path))
        except Exception as exc:  # numpy/timm raise many types for a file of another model
            raise CheckpointError(f"{path} does not fit {type(model).__name__}: {exc}") from None
        model.get_classifier().load_state_dict(head)
        return
    state = read_state_dict(path)
    # pos_embed in the layouts timm loads as they are (a layout its filter converts is not checked)
    stored = state.get("pos_embed")
    if not resize_position_embeddings and isinstance(stored, torch.Tensor):
        _check_position_grid(model, tuple(stored.shape), path)
    module = sys.modules.get(type(model).__module__)
    filter_fn = getattr(module, "checkpoint_filter_fn", None)
    if filter_fn is not None:
        try:
            state = filter_fn(state, model)
        except Exception:  # a checkpoint already in timm layout may trip a converter; use it as it is
            pass
    skip = classifier_prefixes(model)
    state = {k: v for k, v in state.items() if not k.startswith(skip)}
    own = {k: v for k, v in model.state_dict().items() if not k.startswith(skip)}
    wrong = [
        f"{k} {tuple(v.shape)} vs {tuple(own[k].shape)}"
        for k, v in state.items()
        if k in own and own[k].shape != v.shape
    ]
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    if wrong or missing or unexpected:
        detail = (
            f"shape mismatch {wrong[:2]}" if wrong else f"missing {missing[:2]}, unexpected {unexpected[:2]}"
        )
        raise CheckpointError(
            f"{path} is not a checkpoint of this backbone ({type(model).__name__}): {detail}"
        )
    model.load_state_dict(state, strict=False)


def _npz_position_embedding_shape(path: Path) -> tuple[int, ...] | None:
    """The shape of the position embeddings in a JAX ViT `.npz` (None when it has none)."""
    import numpy as np

    try:
        with np.load(path) as arrays:
            keys = [k for k in arrays.files if k.endswith("Transformer/posembed_input/pos_embedding")]
            return tuple(arrays[keys[0]].shape) if keys else None
    except Exception:  # not an npz archive: loading it below says so
        return None


def _check_position_grid(model: nn.Module, stored: tuple[int, ...] | None, path: Path) -> None:
    """Refuse a checkpoint whose position embeddings are for another number of patches than `model`'s."""
    own = getattr(model, "pos_embed", None)
    if stored is None or not isinstance(own, torch.Tensor) or len(stored) < 2 or stored[-2] == own.shape[-2]:
        return
    pretrained, here = _image_side(model, stored[-2]), _image_side(model, own.shape[-2])
    fix = f"set data.image_size={pretrained}" if pretrained else "use the pre-training image size"
    raise CheckpointError(
        f"{path} was pre-trained on {_px(pretrained)} images ({stored[-2]} position embeddings) but "
        f"data.image_size gives {_px(here)} ({own.shape[-2]}): {fix} (resampling them is not allowed here)"
    )


def _image_side(model: nn.Module, tokens: int) -> int | None:
    """The side in px of a square grid of `tokens` position embeddings (prefix tokens included) for `model`."""
    prefix = 0 if getattr(model, "no_embed_class", False) else getattr(model, "num_prefix_tokens", 0)
    patches, patch = tokens - prefix, model.patch_embed.patch_size[0]
    side = math.isqrt(max(patches, 0))
    return side * patch if side * side == patches else None


def _px(side: int | None) -> str:
    return f"{side}x{side}" if side else "non-square"
