"""Which tensors of a timm VisionTransformer are per-block (the learngene's domain) and which are shared.

Learngene methods work on ViTs with global average pooling and no class token (the TLEG/SWS setting): the
blocks are generated from the learngene, patch/position embeddings and the final `fc_norm` are inherited
as they are, and the classifier head is task-specific.
"""

from __future__ import annotations

from typing import Any

from timm.models.vision_transformer import VisionTransformer
from torch import nn

from ..errors import ModelError

BLOCK_TENSORS = (
    "norm1.weight",
    "norm1.bias",
    "attn.qkv.weight",
    "attn.qkv.bias",
    "attn.proj.weight",
    "attn.proj.bias",
    "norm2.weight",
    "norm2.bias",
    "mlp.fc1.weight",
    "mlp.fc1.bias",
    "mlp.fc2.weight",
    "mlp.fc2.bias",
)
INHERITED_TENSORS = (
    "patch_embed.proj.weight",
    "patch_embed.proj.bias",
    "pos_embed",
    "fc_norm.weight",
    "fc_norm.bias",
)
HEAD_TENSORS = ("head.weight", "head.bias")
# The timm constructor used for every aux net and descendant: any width, heads, depth, patch and image size.
VIT_NAME = "vit_tiny_patch16_224"


def check_learngene_vit(model: nn.Module, what: str) -> VisionTransformer:
    """The model as a timm VisionTransformer in the learngene setting, or a ModelError saying why not."""
    if not isinstance(model, VisionTransformer):
        raise ModelError(f"{what} must be a timm VisionTransformer, got {type(model).__name__}")
    if model.cls_token is not None or model.global_pool != "avg":
        raise ModelError(
            f"{what} must use global average pooling without a class token "
            "(model.kwargs: class_token=false, global_pool=avg)"
        )
    names = dict(model.blocks[0].named_parameters())
    missing = [n for n in BLOCK_TENSORS if n not in names]
    if missing or len(names) != len(BLOCK_TENSORS):
        extra = sorted(set(names) - set(BLOCK_TENSORS))
        raise ModelError(
            f"{what} has non-standard blocks (missing {missing}, extra {extra}); use plain ViT blocks"
        )
    return model


def vit_arch(model: VisionTransformer) -> dict[str, Any]:
    """The timm constructor arguments that fix the learngene's shapes (width, heads, patch, image size...)."""
    block = model.blocks[0]
    return {
        "embed_dim": model.embed_dim,
        "num_heads": block.attn.num_heads,
        "mlp_ratio": block.mlp.fc1.out_features / model.embed_dim,
        "patch_size": model.patch_embed.patch_size[0],
        "img_size": model.patch_embed.img_size[0],
        "in_chans": model.patch_embed.proj.in_channels,
        "qkv_bias": block.attn.qkv.bias is not None,
        "class_token": False,
        "global_pool": "avg",
    }
