"""NiNoNet / WNN+ forward: message passing as specified, slicing == zero padding, DMS columns, residual."""

import pytest
import torch
import torch.nn.functional as F
from torch_geometric.data import Data

from learngene_core.errors import ConfigError, DataError
from nino.model import NiNoNet, WNNPlus

N, E, CTX = 7, 25, 5


def make_data(feat: int = 9, seed: int = 0) -> Data:
    g = torch.Generator().manual_seed(seed)
    return Data(
        x=torch.randn(N, 8, generator=g),
        edge_index=torch.randint(0, N, (2, E), generator=g),
        edge_type=torch.randint(0, 15, (E,), generator=g),
        edge_attr=torch.randn(E, feat * CTX, generator=g),
        pos_w=torch.randint(0, 4, (N,), generator=g),
        num_nodes=N,
    )


def make_net(**kwargs) -> NiNoNet:
    torch.manual_seed(0)
    net = NiNoNet(vocab=10, **kwargs)
    with torch.no_grad():  # larger weights than the 0.02 init, so every path visibly matters
        for p in net.parameters():
            p.normal_(0, 0.12)
    return net


def set_chunk(model: torch.nn.Module, size: int) -> None:
    for m in model.modules():
        if hasattr(m, "chunk_size"):
            m.chunk_size = size


def pad_to_9(attr: torch.Tensor) -> torch.Tensor:
    feat = attr.shape[1] // CTX
    return torch.cat([attr, attr.new_zeros(attr.shape[0], (9 - feat) * CTX)], dim=1)


def reference_forward(net: NiNoNet, data: Data) -> torch.Tensor:
    """Spec A.6 written out edge by edge: cat([h_target, h_source]), FiLM, scatter-mean, edge updates."""
    src, dst = data.edge_index
    attr = pad_to_9(data.edge_attr)
    e = net.edge_proj(attr) + net.layer_embed(data.edge_type)
    h = net.node_proj(data.x) + net.wte_pos_enc_layer(data.pos_w)
    for conv, upd in zip(net.gnn.convs[:2], net.gnn.edge_update):
        m = conv.pre_nns[0](torch.cat([h[dst], h[src]], dim=1))
        a, b = conv.edge_encoder(e).chunk(2, dim=1)
        m = a * m + b
        total = torch.zeros(N, net.hid).index_add_(0, dst, m)
        deg = torch.zeros(N).index_add_(0, dst, torch.ones(E)).clamp(min=1)
        agg = total / deg[:, None]
        h = F.silu(conv.lin(conv.post_nns[0](torch.cat([h, agg], dim=1))))
        e = upd.lin1(F.silu(upd.lin_e(e) + upd.lin_s(h)[src] + upd.lin_t(h)[dst]))
    out = net.edge_out(e).view(E, 9, 40)
    return attr.view(E, 9, CTX)[:, :, -1:] + out


def test_forward_equals_the_edge_by_edge_reference():
    net, data = make_net(), make_data()
    torch.testing.assert_close(net(data), reference_forward(net, data), rtol=1e-4, atol=1e-4)


def assert_nowcast_path_equals_autograd_path(net: NiNoNet, data: Data, chunk: int) -> None:
    """Without autograd NiNoNet folds consecutive linear layers into one and sums the FiLM terms per node:
    the same function up to float rounding, in chunks or not, and the weights stay as they are."""
    full = net(data)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    set_chunk(net, chunk)
    with torch.no_grad():
        fast, fast_k = net(data), net(data, k=7)
    tol = {"rtol": 1e-5, "atol": 1e-5 * full.abs().max().item()}
    torch.testing.assert_close(fast, full, **tol)
    torch.testing.assert_close(fast_k, full[:, :, 6], **tol)
    assert all(torch.equal(v, before[k]) for k, v in net.state_dict().items())


@pytest.mark.parametrize("layers", [1, 2, 3, 4])
@pytest.mark.parametrize("chunk", [4, 1000])  # several chunks, one chunk
def test_nowcast_path_equals_autograd_path(layers, chunk):
    assert_nowcast_path_equals_autograd_path(make_net(layers=layers), make_data(), chunk)


def test_nowcast_path_with_nodes_no_edge_reaches():
    data = make_data(feat=2)
    data.edge_index[1] %= 3  # nodes 3..6 only send: their mean over no messages is 0
    assert_nowcast_path_equals_autograd_path(make_net(wte_pos_enc=False), data, chunk=4)


@pytest.mark.parametrize("feat", [1, 4])
def test_fewer_slots_equal_zero_padding_to_nine_and_weights_stay(feat):
    net, data = make_net(), make_data(feat)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    small = net(data)
    padded = net(Data(**{**data.to_dict(), "edge_attr": pad_to_9(data.edge_attr)}))
    assert small.shape == (E, feat, 40)
    torch.testing.assert_close(small, padded[:, :feat], rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(net(data, k=3), padded[:, :feat, 2], rtol=1e-4, atol=1e-4)
    assert all(torch.equal(v, before[k]) for k, v in net.state_dict().items())


def test_prediction_is_residual_on_the_latest_state():
    net, data = make_net(), make_data(2)
    with torch.no_grad():
        net.edge_out.fc[2].weight.zero_()
        net.edge_out.fc[2].bias.fill_(0.5)
    latest = data.edge_attr.view(E, 2, CTX)[:, :, -1]
    torch.testing.assert_close(net(data, k=40), latest + 0.5)


def test_token_ids_change_node_inputs_only_with_wte_pos_enc():
    data = make_data()
    other = Data(**{**data.to_dict(), "pos_w": (data.pos_w + 1) % 4})
    assert not torch.allclose(make_net()(data), make_net()(other))
    plain = make_net(wte_pos_enc=False)
    torch.testing.assert_close(plain(data), plain(other))


def test_meta_training_gradients_reach_the_used_weights():
    net, data = make_net(), make_data()
    net(data).abs().mean().backward()
    assert net.edge_proj.fc[0].weight.grad.abs().sum() > 0
    assert net.gnn.convs[1].edge_encoder.weight.grad.abs().sum() > 0
    assert net.gnn.convs[2].lin.weight.grad is None  # the third conv's output is never used (A.6)


def test_bad_inputs_name_the_problem():
    net = make_net()
    with pytest.raises(DataError, match="10 slots"):
        net(make_data(feat=10))
    with pytest.raises(ConfigError, match="k=41"):
        net(make_data(), k=41)
    bad = make_data()
    bad.x = torch.randn(N, 3)
    with pytest.raises(DataError, match=r"\[N, 8\]"):
        net(bad)


def test_wnn_plus_forecasts_each_slot_as_its_own_scalar_series():
    torch.manual_seed(0)
    wnn = WNNPlus(hid=16)
    data = make_data(feat=3)
    out = wnn(data)
    assert out.shape == (E, 3, 40)
    for s in range(3):
        one = Data(edge_attr=data.edge_attr.view(E, 3, CTX)[:, s], edge_type=data.edge_type)
        torch.testing.assert_close(out[:, s], wnn(one)[:, 0])
    torch.testing.assert_close(wnn(data, k=9), out[:, :, 8])
    x = data.edge_attr.view(E, 3, CTX)[:, 0]
    manual = x[:, -1:] + wnn.edge_mlp(wnn.edge_proj(x) + wnn.layer_embed(data.edge_type))
    torch.testing.assert_close(out[:, 0], manual)
