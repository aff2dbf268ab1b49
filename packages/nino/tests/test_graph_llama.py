"""HF Llama-style neural graphs: hand-derived counts (MHA, GQA, untied head, biases), GQA wiring, round trip."""

import warnings

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from learngene_core.errors import ModelError
from nino.graph import build_graph, flatten_params, write_params


def llama(vocab=7, d=8, inter=12, heads=2, kv_heads=2, layers=2, tie=True, bias=False):
    torch.manual_seed(0)
    cfg = LlamaConfig(
        vocab_size=vocab,
        hidden_size=d,
        intermediate_size=inter,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=kv_heads,
        tie_word_embeddings=tie,
        attention_bias=bias,
        mlp_bias=bias,
        bos_token_id=None,
        eos_token_id=None,
        pad_token_id=None,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = LlamaForCausalLM(cfg)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_()
    return model


def expected_counts(V, d, inter, H, KV, L, tie=True):
    """Hand count: token nodes, R_in; per block ln1 aux, Q heads, Q(+K) neurons, (KV heads, K neurons), V neurons,
    A, ln2 aux, M, R_out; final norm aux; untied head nodes."""
    hd = d // H
    gqa = KV != H
    block_nodes = 1 + H + H * hd + (KV + KV * hd if gqa else 0) + KV * hd + d + 1 + inter + d
    nodes = V + d + L * block_nodes + 1 + (0 if tie else V)
    block_edges = (
        d  # input_layernorm
        + d * H * hd
        + H * hd  # q + q heads
        + d * KV * hd
        + (KV * hd if gqa else 0)  # k (+ its kv-head edges)
        + d * KV * hd
        + KV * hd  # v + v heads
        + d  # attention residual
        + H * hd * d  # o_proj
        + d  # post_attention_layernorm
        + 2 * d * inter
        + d
        + inter * d  # gate, up, mlp residual, down
    )
    edges = V * d + L * block_edges + d + (0 if tie else V * d) + nodes
    return nodes, edges


def test_mha_counts_match_hand_derivation_and_closed_form():
    g = build_graph(llama())
    V, d, inter, H, L = 7, 8, 12, 2, 2
    assert (g.num_nodes, g.num_edges) == expected_counts(V, d, inter, H, H, L) == (112, 1360)
    closed = V + d + L * (4 * d + inter + H + 2) + 1
    assert g.num_nodes == closed
    assert g.num_edges == V * d + L * (4 * d * d + 3 * d * inter + 6 * d) + d + closed
    counts = g.type_counts()
    assert counts["attn_key"] == L * d * d and counts["head"] == L * 2 * d and counts["residual"] == L * 2 * d
    assert counts["norm"] == 2 * L * d + d and "bias" not in counts and "position_embedding" not in counts


@pytest.mark.parametrize(
    ("kwargs", "counts"),
    [
        (dict(heads=4, kv_heads=2), (120, 1240)),
        (dict(heads=4, kv_heads=1, tie=False), (117, 1221)),
        (dict(tie=False), (119, 1423)),
    ],
)
def test_variant_counts(kwargs, counts):
    model = llama(**kwargs)
    g = build_graph(model)
    assert (g.num_nodes, g.num_edges) == counts
    cfg = {"heads": 2, "kv_heads": 2, "tie": True, **kwargs}
    assert counts == expected_counts(7, 8, 12, cfg["heads"], cfg["kv_heads"], 2, cfg["tie"])


@pytest.mark.parametrize("kwargs", [dict(), dict(heads=4, kv_heads=2, tie=False), dict(bias=True)])
def test_round_trip_is_exact(kwargs):
    model = llama(**kwargs)
    g = build_graph(model)
    flat = flatten_params(model)
    states = torch.stack([flat - i for i in range(5)], dim=1)
    feats = g.edge_features(states)
    for tau in range(5):
        assert torch.equal(g.params_from_edges(feats[:, tau : tau + 1]), states[:, tau])
    write_params(model, g.params_from_edges(feats[:, :1]))
    assert torch.equal(flatten_params(model), flat)


def test_biases_become_aux_nodes():
    V, d, inter, H, L = 7, 8, 12, 2, 2
    g = build_graph(llama(bias=True))
    # q, k, v, o, gate, up, down biases: one aux node each per block
    assert g.type_counts()["bias"] == L * (3 * d + d + 2 * inter + d)
    assert g.num_nodes == expected_counts(V, d, inter, H, H, L)[0] + 7 * L


def test_gqa_wiring():
    d, H, KV = 8, 4, 2
    hd, group = d // H, H // KV
    model = llama(heads=H, kv_heads=KV, layers=1)
    g = build_graph(model)
    values = g.edge_features(flatten_params(model))[:, 0]
    src, dst = g.edge_index
    r_in = sorted(torch.unique(dst[g.edge_type == 5]).tolist())
    qn = sorted(torch.unique(dst[g.edge_type == 7]).tolist())
    kn = sorted(torch.unique(src[g.edge_type == 8]).tolist())
    vn = sorted(torch.unique(dst[g.edge_type == 9]).tolist())
    assert len(qn) == H * hd and len(kn) == KV * hd and len(vn) == KV * hd and not set(qn) & set(kn)
    assert sorted(torch.unique(dst[g.edge_type == 8]).tolist()) == r_in  # keys point back at the stream
    # kv-head nodes tie K neuron (g, t) and V neuron (g, t); Q heads only touch Q neurons
    heads = g.edge_index[:, g.edge_type == 11]
    fan = {h: sorted(heads[1, heads[0] == h].tolist()) for h in torch.unique(heads[0]).tolist()}
    q_heads = [h for h, t in fan.items() if set(t) <= set(qn)]
    kv_fan = [t for h, t in fan.items() if h not in q_heads]
    assert len(q_heads) == H and len(kv_fan) == KV
    for grp, targets in enumerate(sorted(kv_fan)):
        assert targets == sorted(kn[grp * hd : (grp + 1) * hd] + vn[grp * hd : (grp + 1) * hd])
    # o_proj column (h, t) starts at V neuron (h // group, t)
    o_w = model.model.layers[0].self_attn.o_proj.weight.detach()
    o_edges = torch.nonzero((g.edge_type == 1) & torch.isin(src, torch.tensor(vn)), as_tuple=True)[0]
    assert o_edges.numel() == d * H * hd
    got = {}
    for e in o_edges.tolist():
        got.setdefault((int(src[e]), int(dst[e])), []).append(float(values[e]))
    a_nodes = sorted({b for _, b in got})
    for h in range(H):
        for t in range(hd):
            for j, a in enumerate(a_nodes):
                assert float(o_w[j, h * hd + t]) in got[(vn[(h // group) * hd + t], a)]


def test_pos_w_and_errors():
    model = llama()
    g = build_graph(model)
    assert sorted(g.pos_w[g.pos_w > 0].tolist()) == list(range(1, 8))
    names = [(n, p.shape) for n, p in model.named_parameters()]
    with pytest.raises(ModelError, match="needs num_heads"):
        build_graph(names)
    assert build_graph(names, num_heads=2).num_edges == g.num_edges
    with pytest.raises(ModelError, match="do not split into 3"):
        build_graph(names, num_heads=3)
