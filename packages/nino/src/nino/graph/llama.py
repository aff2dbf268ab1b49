"""Neural graph of a Hugging Face Llama-style decoder (`LlamaForCausalLM`, Mistral, Qwen2-like names).

Designed in the spirit of the GPT-2 graph (spec A.4.4 only sketches this one). Choices:

- `embed_tokens` (V, d): V token nodes (pos_w = token id + 1) -> block-0 input R_in (type 5). No position
  nodes (rotary positions have no parameters).
- Per block: `input_layernorm.weight` is a type-4 aux node on R_in; q/k/v/o use PyTorch (out, in) layout and
  are transposed into [in, out] blocks. Q heads = `num_attention_heads` head nodes. When
  `num_key_value_heads` equals it, K shares the Q neurons (reversed type-8 edges) and V heads share the Q head
  nodes, exactly as GPT-2. With GQA, K gets its own KV*hd neurons (still reversed edges into R_in) and there
  are `num_key_value_heads` extra head nodes tying the K and V neurons of each group (type 11).
- `o_proj` input (h, t) is the V neuron (h // group, t): with GQA several o_proj columns share a source node
  (parallel edges), with plain MHA it is GPT-2's c_proj.
- Attention residual R_in i -> A i (type 10); `post_attention_layernorm.weight` is type-4 aux on A.
- `gate_proj` and `up_proj` both go A -> the same I hidden neurons M (type 1, parallel edges); the MLP
  residual A i -> R_out i (type 10) is the extra residual-style link; `down_proj` M -> R_out.
- Optional biases (attention_bias / mlp_bias / Qwen2 q,k,v biases) are type-2 aux nodes on their outputs; the
  key bias sits on the K neurons (the GPT-2 k.bias quirk is not copied).
- Final `norm.weight` is type-4 aux on the last R_out; an untied `lm_head` (V, d) gets V output nodes
  (pos_w 0) fed by type-1 edges; a tied one is not listed by `named_parameters()` and needs nothing.

Counts without biases, MHA (H*hd = d), MLP width I, tied head: nodes = V + d + L(4d + I + H + 2) + 1,
edges = V d + L(4 d^2 + 3 d I + 6 d) + d + nodes; an untied head adds V nodes and V d + V edges.
"""

from __future__ import annotations

import torch

from learngene_core.errors import ModelError
from nino.graph.core import RESIDUAL, GraphBuilder, NeuralGraph
from nino.graph.transformer import attention, block_ids, find_prefix

__all__ = ["build_llama", "is_llama"]


def is_llama(names: list[str]) -> bool:
    return any(n.endswith("self_attn.q_proj.weight") for n in names)


def _bias(b: GraphBuilder, name: str) -> torch.Tensor | None:
    return b.index(name) if b.has(name) else None


def build_llama(
    names: list[str],
    shapes: list[torch.Size],
    num_heads: int,
    num_kv_heads: int | None = None,
    token_ids: torch.Tensor | None = None,
) -> NeuralGraph:
    """Graph of a Llama-style decoder from its parameter names/shapes."""
    b = GraphBuilder(names, shapes)
    prefix = find_prefix(names, "embed_tokens.weight")
    emb = b.index(prefix + "embed_tokens.weight")
    vocab, d = emb.shape
    ids = torch.arange(vocab) if token_ids is None else torch.as_tensor(token_ids).long()
    if ids.shape != (vocab,):
        raise ModelError(f"token_ids has shape {tuple(ids.shape)}, embed_tokens has {vocab} rows")
    r = b.nodes(d)
    b.dense(b.nodes(vocab, pos_w=ids + 1), r, emb, 5)
    for i in block_ids(names, prefix + "layers."):
        p = f"{prefix}layers.{i}."
        b.aux_param(p + "input_layernorm.weight", r, 4)
        if b.has(p + "input_layernorm.bias"):
            b.aux_param(p + "input_layernorm.bias", r, 2)
        att = p + "self_attn."
        q, k, v = (b.index(f"{att}{x}_proj.weight").t() for x in "qkv")
        biases = tuple(_bias(b, f"{att}{x}_proj.bias") for x in "qkv")
        heads = attention(b, r, q, k, v, num_heads, num_kv_heads, biases, k_bias_on_input=False)
        a = b.nodes(d)
        b.fixed(r, a, RESIDUAL)
        b.dense(heads.out_inputs(num_heads), a, b.index(att + "o_proj.weight").t(), 1)
        if b.has(att + "o_proj.bias"):
            b.aux_param(att + "o_proj.bias", a, 2)
        b.aux_param(p + "post_attention_layernorm.weight", a, 4)
        if b.has(p + "post_attention_layernorm.bias"):
            b.aux_param(p + "post_attention_layernorm.bias", a, 2)
        gate = b.index(p + "mlp.gate_proj.weight").t()
        m = b.nodes(gate.shape[1])
        b.dense(a, m, gate, 1)
        b.dense(a, m, b.index(p + "mlp.up_proj.weight").t(), 1)
        for x in ("gate", "up"):
            if b.has(f"{p}mlp.{x}_proj.bias"):
                b.aux_param(f"{p}mlp.{x}_proj.bias", m, 2)
        r = b.nodes(d)
        b.fixed(a, r, RESIDUAL)
        b.dense(m, r, b.index(p + "mlp.down_proj.weight").t(), 1)
        if b.has(p + "mlp.down_proj.bias"):
            b.aux_param(p + "mlp.down_proj.bias", r, 2)
    b.aux_param(prefix + "norm.weight", r, 4)
    if b.has(prefix + "norm.bias"):
        b.aux_param(prefix + "norm.bias", r, 2)
    if b.has("lm_head.weight"):
        head = b.index("lm_head.weight")
        b.dense(r, b.nodes(head.shape[0]), head.t(), 1)
    return b.finish("llama")
