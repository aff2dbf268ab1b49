"""MLP/CNN neural graphs: spec A.4.2 golden counts, A.4.3 feature layout, exact round trip, errors."""

import pytest
import torch
from torch import nn

from learngene_core.errors import ModelError
from nino.graph import EDGE_TYPES, build_graph, flatten_params, write_params


def conv_net(in_channels: int) -> nn.Sequential:
    """The paper's FM-16 (1 channel) / C10-16 (3 channels) task net."""
    return nn.Sequential(
        nn.Conv2d(in_channels, 16, 3, stride=2, padding=1),
        nn.ReLU(),
        nn.Conv2d(16, 32, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(32, 32, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(32, 10),
    )


@pytest.mark.parametrize(
    ("channels", "nodes", "edges", "params"), [(1, 95, 2057, 14378), (3, 97, 2091, 14666)]
)
def test_paper_cnn_counts(channels, nodes, edges, params):
    g = build_graph(conv_net(channels))
    assert (g.num_nodes, g.num_edges, g.num_params) == (nodes, edges, params)
    assert g.max_feat_size == 9
    counts = g.type_counts()
    assert counts["self_loop"] == nodes
    assert counts["conv"] == 16 * channels + 16 * 32 + 32 * 32
    assert counts["linear"] == 320 and counts["bias"] == 16 + 32 + 32 + 10
    assert int(g.param_edge_mask.sum()) == edges - nodes
    assert (g.pos_w == 0).all()


def test_mixed_batch_of_two_graphs_matches_official_printout():
    a, b = build_graph(conv_net(1)), build_graph(conv_net(3))
    assert (a.num_nodes + b.num_nodes, a.num_edges + b.num_edges) == (192, 4148)


def test_round_trip_is_exact_and_slots_are_placed():
    torch.manual_seed(0)
    model = conv_net(1)
    g = build_graph(model)
    flat = flatten_params(model)
    states = torch.stack([flat + i for i in range(5)], dim=1)
    feats = g.edge_features(states)
    assert feats.shape == (g.num_edges, 9 * 5)
    per_slot = feats.view(g.num_edges, 9, 5)
    for tau in range(5):
        assert torch.equal(g.params_from_edges(per_slot[:, :, tau]), states[:, tau])
    # conv weight (out j, in i, ky, kx) lands on edge in_i -> out_j at slot ky * 3 + kx
    w = model[0].weight.detach()
    edge, slot = g.param_edge[:9], g.param_slot[:9]
    assert (edge == edge[0]).all() and torch.equal(slot, torch.arange(9))
    assert torch.equal(per_slot[edge[0], :, 4], w[0, 0].flatten() + 4)
    mask = g.param_slot_mask()
    assert int(mask.sum()) == g.num_params and mask[g.edge_type == 3].all()
    assert mask[g.edge_type != 3, 1:].sum() == 0 and not mask[g.edge_type == 13].any()


def test_self_loop_and_padding_values():
    model = nn.Sequential(nn.Linear(3, 4), nn.LayerNorm(4), nn.Linear(4, 2))
    g = build_graph(model)
    assert g.max_feat_size == 1
    feats = g.edge_features(torch.zeros(g.num_params, 5), feat_size=9).view(g.num_edges, 9, 5)
    loops = g.edge_type == 13
    assert (feats[loops, 0] == 2).all() and (feats[loops, 1:] == 0).all()
    assert (feats[:, 1:] == 0).all()
    assert g.type_counts() == {"linear": 12 + 8, "bias": 4 + 4 + 2, "norm": 4, "self_loop": g.num_nodes}
    # nodes: 3 inputs, 4 hidden + 3 aux (bias, ln weight, ln bias), 2 outputs + 1 aux
    assert g.num_nodes == 3 + 4 + 3 + 2 + 1
    with pytest.raises(ModelError, match="smaller than"):
        g.edge_features(torch.zeros(g.num_params, 5), feat_size=0)


def test_linear_edges_go_input_to_output():
    model = nn.Sequential(nn.Linear(2, 3, bias=False))
    g = build_graph(model)
    with torch.no_grad():
        model[0].weight.copy_(torch.arange(6.0).view(3, 2))
    feats = g.edge_features(flatten_params(model))
    for e in range(6):
        src, dst = g.edge_index[:, e].tolist()
        assert feats[e, 0] == model[0].weight[dst - 2, src]


def test_write_params_preserves_dtype_and_round_trips():
    model = nn.Sequential(nn.Conv1d(2, 3, 3), nn.BatchNorm1d(3), nn.Linear(3, 2)).double()
    g = build_graph(model)
    assert g.max_feat_size == 3
    new = torch.randn(g.num_params)
    write_params(model, g.params_from_edges(g.edge_features(new)))
    assert model[0].weight.dtype == torch.float64
    assert torch.equal(flatten_params(model), new)
    with pytest.raises(ModelError, match="flat parameter vector"):
        write_params(model, torch.zeros(3))


def test_input_norm_attaches_to_input_neurons():
    g = build_graph(nn.Sequential(nn.LayerNorm(3), nn.Linear(3, 2)))
    assert g.num_nodes == 3 + 2 + 2 + 1
    assert g.type_counts() == {"linear": 6, "bias": 3 + 2, "norm": 3, "self_loop": 8}
    with pytest.raises(ModelError, match="expects 3 inputs but the previous layer has 4"):
        build_graph(nn.Sequential(nn.LayerNorm(4), nn.Linear(3, 2)))
    with pytest.raises(ModelError, match="no parameters"):
        build_graph(nn.Sequential(nn.ReLU()))


def test_named_shapes_input_gives_same_graph():
    model = conv_net(1)
    a = build_graph(model)
    b = build_graph([(n, p.shape) for n, p in model.named_parameters()])
    assert torch.equal(a.edge_index, b.edge_index) and torch.equal(a.edge_type, b.edge_type)


@pytest.mark.parametrize(
    ("model", "culprit"),
    [
        (nn.Sequential(nn.Embedding(10, 4), nn.Linear(4, 2)), "'0' \\(Embedding\\)"),
        (nn.Sequential(nn.Linear(3, 4), nn.LSTM(4, 4)), "'1' \\(LSTM\\)"),
        (nn.Sequential(nn.Conv2d(1, 4, 3), nn.Flatten(), nn.Linear(36, 2)), "2.weight expects 36 inputs"),
        (nn.Sequential(nn.Conv2d(4, 4, 3, groups=2)), "grouped convolution '0'"),
    ],
)
def test_unsupported_models_name_the_culprit(model, culprit):
    with pytest.raises(ModelError, match=culprit):
        build_graph(model)


def test_edge_type_names_cover_fifteen_ids():
    assert sorted(EDGE_TYPES) == list(range(15))
