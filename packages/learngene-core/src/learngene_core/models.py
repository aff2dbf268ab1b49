"""`build_model`: one entry point over timm vision models and Hugging Face causal LMs.

timm models are created by name (`vit_*`, `deit_*` or any other timm model) with constructor arguments from
the config; the input size, channels and number of classes come from the dataset. Causal LMs are built from a
`model_type` (`llama`, `gpt2`, ...) plus config fields, or loaded from a local directory. Nothing is fetched
from a hub: weights come from a local `checkpoint` file when one is given.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import timm
import torch
from torch import nn

from . import layered_models  # noqa: F401  (registers learngene_vgg and vit_learngene with timm)
from .checkpoint import describe_torch_load_error, load_model_weights
from .config import ModelConfig
from .errors import ModelError, first_line
from .registry import did_you_mean

HF_CONFIG_ERRORS = (ValueError, KeyError, TypeError, OSError)


def build_model(
    cfg: ModelConfig,
    *,
    num_classes: int | None = None,
    input_shape: tuple[int, ...] | None = None,
    vocab_size: int | None = None,
) -> nn.Module:
    """Build the model of `cfg`, sized for the data (classes and image size for timm, vocab for LMs)."""
    model = _build_timm(cfg, num_classes, input_shape) if cfg.source == "timm" else _build_hf(cfg, vocab_size)
    if cfg.checkpoint:
        load_model_weights(model, cfg.checkpoint)
    return model


def _build_timm(cfg: ModelConfig, num_classes: int | None, input_shape: tuple[int, ...] | None) -> nn.Module:
    if not timm.is_model(cfg.name):
        names = timm.list_models()
        raise ModelError(
            f"unknown timm model '{cfg.name}'{did_you_mean(cfg.name, names)}; see timm.list_models()"
        )
    kwargs: dict[str, Any] = {}
    if num_classes is not None:
        kwargs["num_classes"] = num_classes
    if input_shape is not None and len(input_shape) == 3:
        kwargs["in_chans"] = input_shape[0]
        if _accepts_img_size(cfg.name):
            kwargs["img_size"] = input_shape[1]
    kwargs.update(cfg.kwargs)
    try:
        return timm.create_model(cfg.name, pretrained=False, **kwargs)
    except (TypeError, ValueError, AssertionError, RuntimeError) as exc:
        raise ModelError(f"cannot build timm model '{cfg.name}' with {kwargs}: {exc}") from None


def _accepts_img_size(name: str) -> bool:
    """Transformer-style timm models need img_size at construction; CNNs are size-agnostic."""
    return name.startswith(("vit_", "deit", "eva", "beit", "swin", "cait", "xcit", "pit_", "levit"))


def _build_hf(cfg: ModelConfig, vocab_size: int | None) -> nn.Module:
    from transformers import AutoConfig, AutoModelForCausalLM

    path = Path(cfg.name)
    if path.is_dir():
        return load_causal_lm(path, **cfg.kwargs)
    kwargs = dict(cfg.kwargs)
    if vocab_size is not None:
        kwargs.setdefault("vocab_size", vocab_size)
    try:
        config = AutoConfig.for_model(cfg.name, **kwargs)
    except ValueError:
        from transformers.models.auto.configuration_auto import CONFIG_MAPPING

        known = list(CONFIG_MAPPING.keys())
        raise ModelError(
            f"unknown Hugging Face model type '{cfg.name}'{did_you_mean(cfg.name, known)} "
            "(give a model_type such as llama or gpt2, or a local model directory)"
        ) from None
    try:
        model = AutoModelForCausalLM.from_config(config)
    except HF_CONFIG_ERRORS as exc:
        raise ModelError(f"cannot build a causal LM of type '{cfg.name}': {exc}") from None
    return model


def load_causal_lm(path: str | Path, **kwargs: Any) -> nn.Module:
    """`AutoModelForCausalLM.from_pretrained` on a local directory; ModelError for a broken or hostile one.

    transformers reads `.bin` weights with `torch.load(weights_only=True)`: a pickle that would run code is
    refused, and reported as such rather than with torch's advice to retry unsafely.
    """
    import pickle

    from transformers import AutoModelForCausalLM

    path = Path(path)
    try:
        return AutoModelForCausalLM.from_pretrained(path, local_files_only=True, **kwargs)
    except pickle.UnpicklingError as exc:
        raise ModelError(describe_torch_load_error(path, exc)) from None
    except HF_CONFIG_ERRORS as exc:
        raise ModelError(f"cannot load a causal LM from {path}: {first_line(exc)}") from None


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of (trainable) parameters, counting tied parameters once."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def model_output_logits(output: Any) -> torch.Tensor:
    """Logits from a timm output tensor or a transformers ModelOutput."""
    return output if isinstance(output, torch.Tensor) else output.logits
