"""Pre-trained backbones: a timm model built from the config, with local pretrained weights and no classifier.

Weights come from a local file only (safetensors, a torch state dict, or a JAX `.npz` for timm ViTs); the
model's own `checkpoint_filter_fn` (timm) adapts original-repository layouts and position-embedding sizes.
The classifier is never loaded: the downstream task trains its own head. `package:NAME` names a file shipped
in `<package>/assets/` of the method package that asks (e.g. snell's tiny digits ViT).
"""

from __future__ import annotations

import sys
from dataclasses import replace
from importlib import resources
from pathlib import Path

import torch
from accelerate.utils import set_seed
from torch import nn

from .checkpoint import load_weights, torch_load_safely
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
    cfg: ModelConfig, *, num_classes: int, input_shape: tuple[int, ...], seed: int, package: str | None = None
) -> nn.Module:
    """The timm model of `cfg` for this data, with `cfg.checkpoint`'s weights (all but the classifier)."""
    set_seed(seed)
    model = build_model(replace(cfg, checkpoint=None), num_classes=num_classes, input_shape=input_shape)
    if cfg.checkpoint:
        load_backbone_weights(model, resolve_checkpoint(cfg.checkpoint, package))
    return model


def classifier_prefixes(model: nn.Module) -> tuple[str, ...]:
    if not hasattr(model, "get_classifier"):
        return ()
    head = model.get_classifier()
    return tuple(f"{n}." for n, m in model.named_modules() if m is head and n)


def load_backbone_weights(model: nn.Module, path: Path) -> None:
    """Load every weight but the classifier from `path`; CheckpointError naming the file if it does not fit."""
    if not path.is_file():
        raise CheckpointError(f"backbone checkpoint not found: {path}")
    if path.suffix == ".npz":
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
    state = _read_state(path)
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


def _read_state(path: Path) -> dict[str, torch.Tensor]:
    if path.suffix == ".safetensors":
        return load_weights(path)
    state = torch_load_safely(path)
    for key in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict):
        raise CheckpointError(f"{path} holds no state dict")
    return state
