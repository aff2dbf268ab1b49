"""Parity with the published checkpoints, when NINO_OFFICIAL_DIR points at a folder holding `nino_no_posw.pt`
and `nino_mlp.pt` (CI's `.ci/run` sets it; skipped otherwise: the files are never part of the repo).

The reference here is written from the spec alone (A.5 normalisation, A.6 forward pass), densely and without
the package's model code: per-tensor mean/std, features (x - mu) / (std + 1e-6), the network's forward from the
raw state-dict tensors, prediction * std + mu. The package's NiNo must agree to 1e-5 of the predicted update.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from nino.checkpoint import load_nino
from nino.graph import build_graph, flatten_params
from nino.optim import NiNo
from nino.tasks import build_task

OFFICIAL = os.environ.get("NINO_OFFICIAL_DIR")
pytestmark = pytest.mark.skipif(not OFFICIAL, reason="set NINO_OFFICIAL_DIR to the published checkpoints")
SHA256 = {
    "nino_no_posw.pt": "2e2186e4a0e50193080eb9074648786ef25cd5ac3149a7df790127fe41101620",
    "nino_mlp.pt": "34d9ff3703274fa07615e27937dac8ea07f375ed95b5bde6d39abd8c41c06f52",
}


def official(name: str) -> Path:
    path = Path(OFFICIAL or "") / name
    if not path.is_file():
        pytest.skip(f"{path} not found")
    return path


def raw_state(name: str) -> dict[str, torch.Tensor]:
    return torch.load(official(name), map_location="cpu", weights_only=True)["state_dict"]


def lin(s: dict[str, torch.Tensor], name: str, x: torch.Tensor) -> torch.Tensor:
    return x @ s[name + ".weight"].T + s[name + ".bias"]


def reference_nino(s, attr, edge_type, edge_index, lpe, feat: int, k: int) -> torch.Tensor:
    """Spec A.6, dense: [E, feat] normalised prediction for horizon k (residual added)."""
    src, dst = edge_index
    n = lpe.shape[0]
    e = (
        attr @ s["edge_proj.fc.0.weight"][:, : feat * 5].T
        + s["edge_proj.fc.0.bias"]
        + s["layer_embed.weight"][edge_type]
    )
    h = lin(s, "node_proj.fc.0", lpe)
    count = torch.zeros(n).index_add_(0, dst, torch.ones(dst.shape[0])).clamp(min=1)
    for layer in range(2):  # the third convolution's output is never used (A.6)
        p = f"gnn.convs.{layer}."
        a, b = lin(s, p + "edge_encoder", e).chunk(2, dim=-1)
        msg = a * lin(s, p + "pre_nns.0.0", torch.cat([h[dst], h[src]], dim=-1)) + b
        agg = torch.zeros(n, msg.shape[1]).index_add_(0, dst, msg) / count[:, None]
        h = F.silu(lin(s, p + "lin", lin(s, p + "post_nns.0.0", torch.cat([h, agg], dim=-1))))
        u = f"gnn.edge_update.{layer}."
        z = lin(s, u + "lin_e", e) + lin(s, u + "lin_s", h)[src] + lin(s, u + "lin_t", h)[dst]
        e = lin(s, u + "lin1", F.silu(z))
    out = lin(s, "edge_out.fc.2", F.silu(lin(s, "edge_out.fc.0", e))).view(-1, 9, 40)
    return attr.view(-1, feat, 5)[:, :, -1] + out[:, :feat, k - 1]


def reference_wnn(s, attr, edge_type, feat: int, k: int) -> torch.Tensor:
    x = attr.view(-1, feat, 5)
    z = lin(s, "edge_proj.fc.0", x) + s["layer_embed.weight"][edge_type][:, None]
    for i in (0, 2, 4):
        z = F.silu(lin(s, f"edge_mlp.fc.{i}", z))
    return x[:, :, -1] + lin(s, "edge_mlp.fc.6", z)[:, :, k - 1]


def reference_predict(name: str, graph, states: torch.Tensor, k: int) -> torch.Tensor:
    normed = torch.empty_like(states)
    mus, stds = torch.empty(states.shape[0]), torch.empty(states.shape[0])
    start = 0
    for size in graph.param_sizes:  # A.5: one mean/std per tensor over all its elements and states
        block = states[start : start + size]
        mu, std = block.mean(), block.std() if block.numel() > 1 else torch.tensor(0.0)
        normed[start : start + size] = (block - mu) / (std + 1e-6)
        mus[start : start + size], stds[start : start + size] = mu, std
        start += size
    feat = graph.max_feat_size
    attr = graph.edge_features(normed, feat)
    s = raw_state(name)
    if name == "nino_mlp.pt":
        out = reference_wnn(s, attr, graph.edge_type, feat, k)
    else:
        out = reference_nino(s, attr, graph.edge_type, graph.edge_index, graph.lpe(8), feat, k)
    return graph.params_from_edges(out) * stds + mus


def trajectory(task: str, steps: int = 25, every: int = 5) -> tuple[torch.nn.Module, list[torch.Tensor]]:
    """Five AdamW states of `task`, `every` steps apart."""
    torch.manual_seed(0)
    t = build_task(task, 0, 0)
    opt = t.optimizer()
    batches = t.train.forever()
    states = []
    for step in range(1, steps + 1):
        if step % every == 0:
            states.append(flatten_params(t.model))
        opt.zero_grad()
        t.loss_fn(t.model, next(batches)).backward()
        opt.step()
    return t.model, states


@pytest.mark.parametrize("name", sorted(SHA256))
def test_published_files_match_their_pinned_sha256_and_load_strictly(name):
    path = official(name)
    assert hashlib.sha256(path.read_bytes()).hexdigest() == SHA256[name]
    net = load_nino(path)
    expected = {"nino_no_posw.pt": 549_992, "nino_mlp.pt": 57_384}[name]
    assert sum(p.numel() for p in net.parameters()) == expected


@pytest.mark.parametrize("name", sorted(SHA256))
@pytest.mark.parametrize("task,k", [("cnn-digits-16", 40), ("gpt2-tiny", 7)])
def test_predictions_equal_the_spec_reference(name, task, k):
    model, states = trajectory(task)
    nino = NiNo(model=model, ckpt=official(name))
    ours = nino.predict(states, k)
    ref = reference_predict(name, build_graph(model), torch.stack(states, dim=1), k)
    update = ref - states[-1]
    assert update.norm() > 0
    assert (ours - ref).norm() <= 1e-5 * update.norm()
    assert (ours - ref).abs().max() <= 1e-5 * update.abs().max()
