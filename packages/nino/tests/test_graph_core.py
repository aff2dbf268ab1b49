"""NeuralGraph plumbing: LPE, torch_geometric export, shape checks."""

import pytest
import torch
from torch import nn
from torch_geometric.data import Data
from torch_geometric.transforms import AddLaplacianEigenvectorPE
from torch_geometric.utils import to_undirected

import nino.graph.lpe as lpe_module
from learngene_core.errors import ModelError
from nino.graph import build_graph


def small_graph():
    return build_graph(nn.Sequential(nn.Linear(4, 8), nn.LayerNorm(8), nn.Linear(8, 3)))


def test_lpe_shape_cache_and_determinism():
    g = small_graph()
    pe = g.lpe()
    assert pe.shape == (g.num_nodes, 8) and pe.dtype == torch.float32
    assert g.lpe() is pe
    assert torch.equal(small_graph().lpe(), pe)


def laplacian(edge_index, num_nodes):
    """Dense symmetric-normalised Laplacian of the undirected binary graph without self-loops."""
    src, dst = to_undirected(edge_index)
    keep = src != dst
    adj = torch.zeros(num_nodes, num_nodes)
    adj[src[keep], dst[keep]] = 1.0
    deg = adj.sum(1)
    return torch.eye(num_nodes) - adj / torch.sqrt(deg[:, None] * deg[None, :])


def eigenvalues_of(lap, vecs):
    """Eigenvalue of each column, asserting the column is a unit eigenvector of lap."""
    vals = (vecs * (lap @ vecs)).sum(0)
    assert torch.allclose(vecs.norm(dim=0), torch.ones(vecs.shape[1]), atol=1e-4)
    assert torch.allclose(lap @ vecs, vecs * vals, atol=1e-4)
    return vals


def test_lpe_has_the_same_eigenvalues_as_torch_geometric():
    g = small_graph()
    data = Data(edge_index=to_undirected(g.edge_index), num_nodes=g.num_nodes)
    ref = AddLaplacianEigenvectorPE(8, is_undirected=True)(data).laplacian_eigenvector_pe.float()
    lap = laplacian(g.edge_index, g.num_nodes)
    ours = eigenvalues_of(lap, g.lpe())
    assert torch.allclose(ours, eigenvalues_of(lap, ref), atol=1e-4)
    assert (ours > 1e-4).all() and (ours[1:] >= ours[:-1] - 1e-5).all()


def test_sparse_and_dense_lpe_agree(monkeypatch):
    g = small_graph()
    lap = laplacian(g.edge_index, g.num_nodes)
    dense = lpe_module.laplacian_pe(g.edge_index, g.num_nodes, 4)
    monkeypatch.setattr(lpe_module, "DENSE_LIMIT", 1)
    sparse = lpe_module.laplacian_pe(g.edge_index, g.num_nodes, 4)
    assert torch.allclose(eigenvalues_of(lap, dense), eigenvalues_of(lap, sparse), atol=1e-4)


def test_lpe_of_tiny_graph_is_zero_padded():
    g = build_graph(nn.Sequential(nn.Linear(1, 1, bias=False)))
    pe = g.lpe()
    assert pe.shape == (2, 8) and (pe[:, 1:] == 0).all()


def test_to_pyg_carries_everything():
    g = small_graph()
    attr = g.edge_features(torch.randn(g.num_params, 5))
    data = g.to_pyg(attr)
    assert data.num_nodes == g.num_nodes and data.x.shape == (g.num_nodes, 8)
    assert torch.equal(data.edge_type, g.edge_type) and torch.equal(data.pos_w, g.pos_w)
    assert data.edge_attr is attr
    with pytest.raises(ModelError, match="edge_attr has 3 rows"):
        g.to_pyg(attr[:3])


def test_bad_state_shapes_are_rejected():
    g = small_graph()
    with pytest.raises(ModelError, match=r"states must have shape \[83, c\]"):
        g.edge_features(torch.zeros(10, 5))
    with pytest.raises(ModelError, match="values must have shape"):
        g.params_from_edges(torch.zeros(3, 1))


def test_describe_lists_counts():
    text = small_graph().describe()
    assert "architecture: mlp_cnn" in text and "parameters: 83" in text and "self_loop" in text


@pytest.mark.parametrize("task", ["gpt2-tiny", "llama-tiny"])
def test_sparse_lpe_finds_every_vector_of_a_repeated_eigenvalue(monkeypatch, task):
    """The tiny GPT-2 graph (730 nodes) has a double eigenvalue among its 9 smallest; the sparse solver must
    return both vectors, so its eigenvalues equal a dense solver's, in order."""
    from nino.tasks import build_task

    g = build_graph(build_task(task, 0, 0).model)
    lap = laplacian(g.edge_index, g.num_nodes).double()
    dense = torch.linalg.eigvalsh(lap)[1:9]
    assert (dense[1:] - dense[:-1]).abs().min() < 1e-6  # the graph really has a repeated eigenvalue
    monkeypatch.setattr(lpe_module, "DENSE_LIMIT", 1)  # force the sparse (ARPACK) path
    sparse = eigenvalues_of(lap.float(), lpe_module.laplacian_pe(g.edge_index, g.num_nodes, 8))
    torch.testing.assert_close(sparse.double(), dense, atol=1e-5, rtol=0)
    monkeypatch.undo()
    torch.testing.assert_close(eigenvalues_of(lap.float(), g.lpe()).double(), dense, atol=1e-5, rtol=0)
