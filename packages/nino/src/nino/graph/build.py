"""`build_graph`: pick the architecture builder for a model (or its named parameter shapes)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import nn

from learngene_core.errors import ModelError
from nino.graph.core import NeuralGraph
from nino.graph.gpt2 import build_gpt2, is_gpt2
from nino.graph.llama import build_llama, is_llama
from nino.graph.mlp_cnn import build_mlp_cnn, check_mlp_cnn_modules
from nino.graph.vit import build_vit, is_vit

__all__ = ["build_graph"]


def _named_shapes(model_or_named_params: Any) -> tuple[list[str], list[torch.Size]]:
    items = (
        model_or_named_params.named_parameters()
        if isinstance(model_or_named_params, nn.Module)
        else model_or_named_params
    )
    names, shapes = [], []
    for item in items:
        try:
            name, value = item
        except (TypeError, ValueError):
            raise ModelError(f"expected (name, tensor or shape) pairs, got {item!r:.80}") from None
        names.append(str(name))
        shapes.append(torch.Size(value.shape if hasattr(value, "shape") else value))
    if not names:
        raise ModelError("the model has no parameters")
    return names, shapes


def _config_int(model: Any, *keys: str) -> int | None:
    config = getattr(model, "config", None)
    for key in keys:
        value = getattr(config, key, None)
        if isinstance(value, int):
            return value
    return None


def _require(value: int | None, what: str, arch: str) -> int:
    if value is None:
        raise ModelError(f"{arch} graph needs {what}: pass {what}=... when building from named parameters")
    return value


def build_graph(
    model_or_named_params: nn.Module | Iterable[tuple[str, Any]],
    *,
    num_heads: int | None = None,
    num_kv_heads: int | None = None,
    token_ids: torch.Tensor | None = None,
) -> NeuralGraph:
    """Neural graph of an MLP/CNN, HF GPT-2, HF Llama-style model or timm ViT.

    Accepts an `nn.Module` or an iterable of (name, tensor-or-shape) in `named_parameters()` order. Head counts
    are read from the module (HF `config`, timm `blocks[0].attn.num_heads`) unless given; they are required
    for transformers given as names/shapes. `token_ids` (GPT-2/Llama) are the original vocabulary ids of the
    embedding rows (for a subsampled vocabulary); `pos_w` of token nodes is id + 1.
    Unsupported modules/parameters raise `ModelError` naming them.
    """
    module = model_or_named_params if isinstance(model_or_named_params, nn.Module) else None
    names, shapes = _named_shapes(model_or_named_params)
    if is_gpt2(names):
        heads = num_heads or _config_int(module, "n_head", "num_attention_heads")
        return build_gpt2(names, shapes, _require(heads, "num_heads", "GPT-2"), token_ids)
    if is_llama(names):
        heads = num_heads or _config_int(module, "num_attention_heads")
        kv = num_kv_heads or _config_int(module, "num_key_value_heads") or heads
        return build_llama(names, shapes, _require(heads, "num_heads", "Llama"), kv, token_ids)
    if is_vit(names):
        if num_heads is None and module is not None:
            blocks = getattr(module, "blocks", None)
            num_heads = getattr(getattr(blocks[0], "attn", None), "num_heads", None) if blocks else None
        return build_vit(names, shapes, _require(num_heads, "num_heads", "ViT"))
    if module is not None:
        if getattr(module, "config", None) is not None and hasattr(module, "can_generate"):
            raise ModelError(
                f"unsupported architecture {type(module).__name__}: supported are MLP/CNN, HF GPT-2, "
                "HF Llama-style and timm ViT"
            )
        check_mlp_cnn_modules(module)
    return build_mlp_cnn(names, shapes)
