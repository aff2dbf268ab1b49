"""The multi-head attention sub-graph shared by the GPT-2, Llama and ViT builders (spec A.4.4).

Q and K neurons share nodes (QK) with opposite edge directions: query edges R_in i -> QK j (type 7), key edges
QK j -> R_in i (type 8). One head node per head ties that head's Q and V neurons (type 11, value 1). With
grouped-query attention (fewer K/V heads than Q heads) K gets its own neurons (reversed edges as well) and the
K/V heads get their own head nodes tying K and V neurons of the group.
"""

from __future__ import annotations

import re

import torch

from learngene_core.errors import ModelError
from nino.graph.core import HEAD, GraphBuilder

__all__ = ["Attention", "attention", "block_ids", "find_prefix"]


class Attention:
    """Node groups created by `attention`: `qk` (Q neurons), `k` (K neurons), `v` (V neurons), `heads`."""

    def __init__(self, qk: torch.Tensor, k: torch.Tensor, v: torch.Tensor, heads: torch.Tensor, group: int):
        self.qk, self.k, self.v, self.heads, self.group = qk, k, v, heads, group

    def out_inputs(self, num_heads: int) -> torch.Tensor:
        """Node id of each input neuron (head h, dim t) of the output projection: V neuron (h // group, t)."""
        head_dim = self.qk.numel() // num_heads
        pos = torch.arange(num_heads * head_dim)
        kv_head = pos // head_dim // self.group
        return self.v[kv_head * head_dim + pos % head_dim]


def _head_edges(b: GraphBuilder, heads: torch.Tensor, neurons: torch.Tensor) -> None:
    per_head = neurons.numel() // heads.numel()
    b.fixed(heads[torch.arange(neurons.numel()) // per_head], neurons, HEAD)


def attention(
    b: GraphBuilder,
    r_in: torch.Tensor,
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    num_heads: int,
    num_kv_heads: int | None = None,
    biases: tuple[torch.Tensor | None, torch.Tensor | None, torch.Tensor | None] = (None, None, None),
    k_bias_on_input: bool = True,
) -> Attention:
    """Add Q/K/V edges; q, k, v are flat-position tensors in [d_in, d_out] layout, biases [d_out] or None.

    `k_bias_on_input` reproduces the official GPT-2 quirk (the key bias aux node points at the block-input
    neurons, not at the K neurons).
    """
    num_kv_heads = num_kv_heads or num_heads
    if q.shape[1] % num_heads or k.shape[1] % num_kv_heads or num_heads % num_kv_heads:
        raise ModelError(
            f"attention sizes q {q.shape[1]}, k {k.shape[1]} do not split into {num_heads} query / "
            f"{num_kv_heads} key-value heads"
        )
    if k.shape != v.shape or q.shape[1] // num_heads != k.shape[1] // num_kv_heads:
        raise ModelError(
            f"attention key/value shapes {tuple(k.shape)}/{tuple(v.shape)} do not match the query"
        )
    group = num_heads // num_kv_heads
    heads = b.nodes(num_heads)
    qk = b.nodes(q.shape[1])
    b.dense(r_in, qk, q, 7)
    _head_edges(b, heads, qk)
    if group == 1:
        kn, kv_heads = qk, heads
    else:
        kv_heads = b.nodes(num_kv_heads)
        kn = b.nodes(k.shape[1])
        _head_edges(b, kv_heads, kn)
    b.dense(kn, r_in, k.t(), 8)
    vn = b.nodes(v.shape[1])
    b.dense(r_in, vn, v, 9)
    _head_edges(b, kv_heads, vn)
    q_bias, k_bias, v_bias = biases
    if q_bias is not None:
        b.aux(q_bias, qk, 2)
    if k_bias is not None:
        if k_bias_on_input and k_bias.numel() != r_in.numel():
            raise ModelError(
                "key bias size differs from the model width; cannot attach it to the block input"
            )
        b.aux(k_bias, r_in if k_bias_on_input else kn, 2)
    if v_bias is not None:
        b.aux(v_bias, vn, 2)
    return Attention(qk, kn, vn, heads, group)


def find_prefix(names: list[str], suffix: str) -> str:
    """The prefix before `suffix` of the first name ending with it ('' if at the start)."""
    for name in names:
        if name.endswith(suffix) and (name == suffix or name[: -len(suffix)].endswith(".")):
            return name[: -len(suffix)]
    raise ModelError(f"no parameter ending in {suffix!r}")


def block_ids(names: list[str], prefix: str) -> list[int]:
    """Sorted block numbers i of names starting with `prefix<i>.`; must be 0..L-1."""
    pattern = re.compile(re.escape(prefix) + r"(\d+)\.")
    ids = sorted({int(m.group(1)) for n in names if (m := pattern.match(n))})
    if ids != list(range(len(ids))):
        raise ModelError(f"transformer blocks under {prefix!r} are not numbered 0..L-1: {ids}")
    return ids
