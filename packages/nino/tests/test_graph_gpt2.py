"""HF GPT-2 neural graphs: spec A.4.4 counts, per-block edge types, fused-QKV mapping, exact round trip."""

import warnings

import pytest
import torch
from transformers import GPT2Config, GPT2LMHeadModel

from learngene_core.errors import ModelError
from nino.graph import build_graph, flatten_params, write_params


def gpt2(vocab=5, positions=3, d=6, heads=2, layers=2, tie=True, seed=0):
    torch.manual_seed(seed)
    cfg = GPT2Config(
        vocab_size=vocab,
        n_positions=positions,
        n_embd=d,
        n_layer=layers,
        n_head=heads,
        tie_word_embeddings=tie,
    )
    cfg.bos_token_id = cfg.eos_token_id = None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = GPT2LMHeadModel(cfg)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_()
    return model


def expected_counts(V, P, d, H, L):
    nodes = V + P + d + L * (8 * d + H + 10) + 2
    return nodes, V * d + P * d + L * (12 * d * d + 17 * d) + 2 * d + nodes


def test_tiny_gpt2_counts_and_round_trip():
    model = gpt2()
    g = build_graph(model)
    assert (g.num_nodes, g.num_edges) == expected_counts(5, 3, 6, 2, 2) == (136, 1264)
    assert g.arch == "gpt2" and g.max_feat_size == 1
    flat = flatten_params(model)
    states = torch.stack([flat * (i + 1) for i in range(5)], dim=1)
    feats = g.edge_features(states)
    assert feats.shape == (g.num_edges, 5)
    for tau in range(5):
        assert torch.equal(g.params_from_edges(feats[:, tau : tau + 1]), states[:, tau])
    write_params(model, g.params_from_edges(feats[:, 2:3]))
    assert torch.equal(flatten_params(model), 3 * flat)


def test_lm1b_3_24_counts_match_official_printout():
    names = [
        (n, p.shape) for n, p in gpt2(vocab=1000, positions=1024, d=24, heads=3, layers=3).named_parameters()
    ]
    g = build_graph(names, num_heads=3)
    assert (g.num_nodes, g.num_edges) == (2665, 73249) == expected_counts(1000, 1024, 24, 3, 3)
    fm16 = (95, 2057)
    assert (g.num_nodes + fm16[0], g.num_edges + fm16[1]) == (2760, 75306)


def test_edge_type_histogram_per_block():
    d, H, L, V, P = 6, 2, 2, 5, 3
    counts = build_graph(gpt2()).type_counts()
    assert counts == {
        "linear": L * (d * d + 8 * d * d),
        "bias": L * (3 * d + d + 4 * d + d + 2 * d) + d,  # qkv, c_proj, c_fc, mlp.c_proj, ln_1/ln_2 biases
        "norm": L * 2 * d + d,
        "token_embedding": V * d,
        "position_embedding": P * d,
        "attn_query": L * d * d,
        "attn_key": L * d * d,
        "attn_value": L * d * d,
        "residual": L * 2 * d,
        "head": L * 2 * d,
        "self_loop": 136,
    }
    assert H == 2


def edge_lookup(g, etype):
    """{(src, dst): edge id} for the edges of one type."""
    idx = torch.nonzero(g.edge_type == etype, as_tuple=True)[0]
    return {tuple(g.edge_index[:, e].tolist()): int(e) for e in idx}


def test_fused_qkv_split_reversed_keys_heads_and_k_bias_quirk():
    d, H = 6, 2
    model = gpt2(layers=1)
    g = build_graph(model)
    values = g.edge_features(flatten_params(model))[:, 0]
    attn = model.transformer.h[0].attn
    w, bias = attn.c_attn.weight.detach(), attn.c_attn.bias.detach()
    r_in = torch.unique(g.edge_index[1, g.edge_type == 5]).tolist()
    q, k, v = edge_lookup(g, 7), edge_lookup(g, 8), edge_lookup(g, 9)
    qk = sorted({dst for _, dst in q})
    vn = sorted({dst for _, dst in v})
    assert set(k) == {(b, a) for a, b in q}  # same node pairs, opposite direction
    for i, a in enumerate(r_in):
        for j in range(d):
            assert values[q[(a, qk[j])]] == w[i, j]
            assert values[k[(qk[j], a)]] == w[i, d + j]
            assert values[v[(a, vn[j])]] == w[i, 2 * d + j]
    # head nodes: each feeds d/H Q neurons and d/H V neurons of the same head
    heads = g.edge_index[:, g.edge_type == 11]
    for h in torch.unique(heads[0]).tolist():
        targets = heads[1, heads[0] == h].tolist()
        assert len(targets) == 2 * d // H
        q_pos = sorted(qk.index(t) for t in targets if t in qk)
        v_pos = sorted(vn.index(t) for t in targets if t in vn)
        assert q_pos == v_pos and q_pos == list(range(q_pos[0], q_pos[0] + d // H))
    # biases: q.bias -> Q neurons, v.bias -> V neurons, k.bias -> block-input neurons (quirk)
    bias_edges = g.edge_type == 2
    src, dst = g.edge_index[:, bias_edges]
    groups = {s: sorted(dst[src == s].tolist()) for s in torch.unique(src).tolist()}
    by_value = {}
    for e in torch.nonzero(bias_edges, as_tuple=True)[0].tolist():
        by_value.setdefault(int(g.edge_index[0, e]), []).append(float(values[e]))
    aux_of = lambda part: next(
        s for s, vals in by_value.items() if vals == bias[part * d : (part + 1) * d].tolist()
    )  # noqa: E731
    assert groups[aux_of(0)] == qk and groups[aux_of(2)] == vn and groups[aux_of(1)] == sorted(r_in)
    assert (g.edge_features(torch.zeros(g.num_params))[g.edge_type == 11, 0] == 1).all()


def test_pos_w_marks_token_nodes_with_ids():
    model = gpt2()
    g = build_graph(model)
    tokens = torch.unique(g.edge_index[0, g.edge_type == 5])
    assert sorted(g.pos_w[tokens].tolist()) == [1, 2, 3, 4, 5]
    assert int((g.pos_w > 0).sum()) == 5
    sub = build_graph(model, token_ids=torch.tensor([3, 10, 11, 40, 50256]))
    assert sorted(sub.pos_w[sub.pos_w > 0].tolist()) == [4, 11, 12, 41, 50257]
    with pytest.raises(ModelError, match="token_ids has shape"):
        build_graph(model, token_ids=torch.arange(4))


def test_untied_lm_head_gets_output_nodes_and_round_trips():
    model = gpt2(tie=False)
    g = build_graph(model)
    nodes, edges = expected_counts(5, 3, 6, 2, 2)
    assert (g.num_nodes, g.num_edges) == (nodes + 5, edges + 5 * 6 + 5)
    flat = torch.randn(g.num_params)
    assert torch.equal(g.params_from_edges(g.edge_features(flat)), flat)


def test_base_gpt2_model_without_prefix_gives_the_same_graph():
    model = gpt2()
    base = build_graph(model.transformer)
    full = build_graph(model)
    assert base.param_names[0] == "wte.weight"
    assert torch.equal(base.edge_index, full.edge_index) and torch.equal(base.edge_type, full.edge_type)


def test_named_shapes_need_num_heads():
    names = [(n, p.shape) for n, p in gpt2().named_parameters()]
    with pytest.raises(ModelError, match="needs num_heads"):
        build_graph(names)
    with pytest.raises(ModelError, match="do not split into 4"):
        build_graph(names, num_heads=4)
    with pytest.raises(ModelError, match="unsupported parameter 'extra.weight'"):
        build_graph([*names, ("extra.weight", (3, 3))], num_heads=2)
