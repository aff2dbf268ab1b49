"""Neural graph of a timm `VisionTransformer` (plain pre-norm blocks, fused qkv).

- `patch_embed.proj` (D, C, p, p) is a conv (type 3) from C input-channel nodes to the D stream neurons
  R_in, one spatial slot per kernel position, so `max_feat_size` becomes p * p (NiNo's edge encoder takes 9
  slots: a patch size above 3 needs a NiNo model built with a larger `max_feat_size`).
- `cls_token` (1, 1, D) is one aux node -> R_in (type 5); `pos_embed` (1, T, D) gives T position nodes -> R_in
  (type 6). Both add to the stream, like GPT-2's wte/wpe.
- Blocks as GPT-2 (norm1 on R_in, attention sub-graph with the k.bias quirk, residuals, norm2 on A, fc1/fc2)
  but with PyTorch (out, in) layout: the fused `qkv` (3D, D) is split through a (3, D, D) view.
- Final `norm` on the last R_out, `head` (classes, D) to class nodes (+ bias aux).

Other timm options (register tokens, layer scale, qk-norm, fc_norm, ...) fail with a ModelError naming the
parameter.
"""

from __future__ import annotations

import torch

from learngene_core.errors import ModelError
from nino.graph.core import RESIDUAL, GraphBuilder, NeuralGraph
from nino.graph.transformer import attention, block_ids

__all__ = ["build_vit", "is_vit"]


def is_vit(names: list[str]) -> bool:
    return any(n.endswith("attn.qkv.weight") for n in names) and "patch_embed.proj.weight" in names


def build_vit(names: list[str], shapes: list[torch.Size], num_heads: int) -> NeuralGraph:
    """Graph of a timm ViT from its parameter names/shapes."""
    b = GraphBuilder(names, shapes)
    patch = b.index("patch_embed.proj.weight")
    dim, chans = patch.shape[:2]
    r = b.nodes(dim)
    b.dense(b.nodes(chans), r, patch.transpose(0, 1).reshape(chans, dim, -1), 3)
    if b.has("patch_embed.proj.bias"):
        b.aux_param("patch_embed.proj.bias", r, 2)
    if b.has("cls_token"):
        b.aux(b.index("cls_token").reshape(-1), r, 5)
    if b.has("pos_embed"):
        pos = b.index("pos_embed").reshape(-1, dim)
        b.dense(b.nodes(pos.shape[0]), r, pos, 6)
    for i in block_ids(names, "blocks."):
        p = f"blocks.{i}."
        b.aux_param(p + "norm1.weight", r, 4)
        b.aux_param(p + "norm1.bias", r, 2)
        w = b.index(p + "attn.qkv.weight")
        if w.shape[0] != 3 * w.shape[1]:
            raise ModelError(f"{p}attn.qkv.weight has shape {tuple(w.shape)}; expected (3 * D, D)")
        w = w.view(3, -1, w.shape[1])
        bias = b.index(p + "attn.qkv.bias").view(3, -1) if b.has(p + "attn.qkv.bias") else None
        biases = (bias[0], bias[1], bias[2]) if bias is not None else (None, None, None)
        att = attention(b, r, w[0].t(), w[1].t(), w[2].t(), num_heads, biases=biases, k_bias_on_input=True)
        a = b.nodes(dim)
        b.fixed(r, a, RESIDUAL)
        b.dense(att.out_inputs(num_heads), a, b.index(p + "attn.proj.weight").t(), 1)
        for suffix in ("attn.proj.bias", "norm2.weight", "norm2.bias"):
            b.aux_param(p + suffix, a)
        fc1 = b.index(p + "mlp.fc1.weight").t()
        m = b.nodes(fc1.shape[1])
        b.dense(a, m, fc1, 1)
        b.aux_param(p + "mlp.fc1.bias", m)
        r = b.nodes(dim)
        b.fixed(a, r, RESIDUAL)
        b.dense(m, r, b.index(p + "mlp.fc2.weight").t(), 1)
        b.aux_param(p + "mlp.fc2.bias", r)
    b.aux_param("norm.weight", r, 4)
    b.aux_param("norm.bias", r, 2)
    if b.has("head.weight"):
        head = b.index("head.weight").t()
        out = b.nodes(head.shape[1])
        b.dense(r, out, head, 1)
        if b.has("head.bias"):
            b.aux_param("head.bias", out, 2)
    return b.finish("vit")
