"""Neural graph of a Hugging Face GPT-2 (`GPT2LMHeadModel` / `GPT2Model`), spec A.4.4.

Conv1D weights are stored (in, out), so they map to [in, out] edge blocks without a transpose. The fused
`c_attn` (d, 3d) is split into virtual q/k/v (d, d) blocks via a (d, 3, d) view (its bias via (3, d)). Nodes:
V token nodes (pos_w = token id + 1), P position nodes, then per block the attention sub-graph of
`nino.graph.transformer` (k.bias quirk on), the attention residual R_in -> A and the MLP residual A -> R_out
(type 10). A tied `lm_head` is not a separate parameter and needs nothing; an untied one gets V output nodes.

Counts: nodes = V + P + d + L(8d + H + 10) + 2, edges = V d + P d + L(12 d^2 + 17 d) + 2d + nodes.
"""

from __future__ import annotations

import torch

from learngene_core.errors import ModelError
from nino.graph.core import RESIDUAL, GraphBuilder, NeuralGraph
from nino.graph.transformer import attention, block_ids, find_prefix

__all__ = ["build_gpt2", "is_gpt2"]


def is_gpt2(names: list[str]) -> bool:
    return any(n.endswith("attn.c_attn.weight") for n in names)


def build_gpt2(
    names: list[str], shapes: list[torch.Size], num_heads: int, token_ids: torch.Tensor | None = None
) -> NeuralGraph:
    """Graph of a GPT-2 from its parameter names/shapes; `token_ids` = original ids of the wte rows."""
    b = GraphBuilder(names, shapes)
    prefix = find_prefix(names, "wte.weight")
    wte = b.index(prefix + "wte.weight")
    vocab, d = wte.shape
    ids = torch.arange(vocab) if token_ids is None else torch.as_tensor(token_ids).long()
    if ids.shape != (vocab,):
        raise ModelError(f"token_ids has shape {tuple(ids.shape)}, the wte has {vocab} rows")
    tokens = b.nodes(vocab, pos_w=ids + 1)
    r = b.nodes(d)
    b.dense(tokens, r, wte, 5)
    if b.has(prefix + "wpe.weight"):
        wpe = b.index(prefix + "wpe.weight")
        b.dense(b.nodes(wpe.shape[0]), r, wpe, 6)
    for i in block_ids(names, prefix + "h."):
        p = f"{prefix}h.{i}."
        b.aux_param(p + "ln_1.weight", r, 4)
        b.aux_param(p + "ln_1.bias", r, 2)
        w = b.index(p + "attn.c_attn.weight")
        if w.shape[1] % 3:
            raise ModelError(f"{p}attn.c_attn.weight has shape {tuple(w.shape)}; expected (d, 3 * d_attn)")
        w = w.view(w.shape[0], 3, -1)
        bias = b.index(p + "attn.c_attn.bias").view(3, -1) if b.has(p + "attn.c_attn.bias") else None
        biases = (bias[0], bias[1], bias[2]) if bias is not None else (None, None, None)
        att = attention(b, r, w[:, 0], w[:, 1], w[:, 2], num_heads, biases=biases, k_bias_on_input=True)
        a = b.nodes(d)
        b.fixed(r, a, RESIDUAL)
        b.dense(att.out_inputs(num_heads), a, b.index(p + "attn.c_proj.weight"), 1)
        for suffix in ("attn.c_proj.bias", "ln_2.weight", "ln_2.bias"):
            b.aux_param(p + suffix, a)
        fc = b.index(p + "mlp.c_fc.weight")
        m = b.nodes(fc.shape[1])
        b.dense(a, m, fc, 1)
        b.aux_param(p + "mlp.c_fc.bias", m)
        r = b.nodes(d)
        b.fixed(a, r, RESIDUAL)
        b.dense(m, r, b.index(p + "mlp.c_proj.weight"), 1)
        b.aux_param(p + "mlp.c_proj.bias", r)
    b.aux_param(prefix + "ln_f.weight", r, 4)
    b.aux_param(prefix + "ln_f.bias", r, 2)
    if b.has("lm_head.weight"):
        head = b.index("lm_head.weight")
        b.dense(r, b.nodes(head.shape[0]), head.t(), 1)
    return b.finish("gpt2")
