"""The NiNo network (spec A.6): a message-passing GNN over a neural graph that nowcasts every parameter.

Edges carry the parameters' normalised histories; three FiLM-modulated mean-aggregation convolutions (the
last one's node output is never used, as in the official model) alternate with edge updates; an edge MLP
decodes 40 horizons per kernel slot at once (DMS), added to the most recent state. `WNNPlus` is the graph-free
per-parameter baseline with the same forward contract. Module names follow the official checkpoints, so their
state dicts load with strict=True.

Nowcasting (no autograd) takes a cheaper route to the same function, equal up to float rounding: the edge-wise
work runs in chunks of `chunk_size` edges (peak memory: one [E, hid] tensor plus a few [chunk, 2 * hid] ones),
and the edge states are never materialised. Every edge update ends in a linear layer (lin1) and every reader of
the edge states starts with one (the next FiLM encoder and lin_e, or the decoder), so the two are multiplied
into one matrix per forward pass (likewise the input projection and type embedding with the first readers);
and of a FiLM message only scale(e) * h_src needs a product per edge, the rest of its mean is linear in the
edge states summed per node. About a third of the edge-wise multiply-adds of the modules' own forward.
"""

from __future__ import annotations

import inspect
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

with (
    warnings.catch_warnings()
):  # torch_geometric's import-time torch.jit.script deprecation notice: not ours to act on
    warnings.filterwarnings("ignore", message=".*torch.jit.script.*", category=FutureWarning)
    from torch_geometric.nn import MessagePassing

from learngene_core.errors import ConfigError, DataError, ModelError

__all__ = ["PAPER_SNAPSHOT_EVERY", "NiNoNet", "WNNPlus", "build_nino", "check_model_args", "model_args_of"]

CHUNK_SIZE = 1 << 17
# NiNoNet's default chunk when nowcasting: 2**17 / hid edges, so a chunk's [chunk, 2 * hid] float32 block is 1 MB,
# about a core's L2 cache (unchunked, the published checkpoint's nowcast measured 1.6x slower on mlp-digits'
# 3,607 edges and 1.8x on gpt2-3-24's 26,649; 2**16 / hid about as fast as 2**17 / hid).
CHUNK_FLOATS = 1 << 17
# Optimizer steps between the states the official checkpoints were meta-trained on (one horizon unit, A.7).
PAPER_SNAPSHOT_EVERY = 200


class _Stack(nn.Module):
    """An `fc` Sequential; the wrapper only exists so state-dict keys read `<name>.fc.<i>.weight`."""

    def __init__(self, *layers: nn.Module) -> None:
        super().__init__()
        self.fc = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x)


def _mlp(dims: list[int]) -> _Stack:
    """Linear layers of widths `dims` with SiLU between them (keys fc.0, fc.2, ...)."""
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(dims[:-1], dims[1:])):
        if i:
            layers.append(nn.SiLU())
        layers.append(nn.Linear(a, b))
    return _Stack(*layers)


def _chunks(n: int, size: int) -> list[slice]:
    return [slice(i, min(i + size, n)) for i in range(0, n, size)]


def _edgewise(fn, n: int, out: torch.Tensor | None, chunk_size: int) -> torch.Tensor:
    """Run `fn(slice)` over edge chunks into `out` (or return fn(all) when autograd needs the graph)."""
    if out is None:
        return fn(slice(0, n))
    for sl in _chunks(n, chunk_size):
        out[sl] = fn(sl)
    return out


def _chunked() -> bool:
    return not torch.is_grad_enabled()


def _init_weights(module: nn.Module) -> None:
    """N(0, 0.02) for every Linear/Embedding weight, zero biases (A.6)."""
    for m in module.modules():
        if isinstance(m, (nn.Linear, nn.Embedding)):
            nn.init.normal_(m.weight, std=0.02)
            if getattr(m, "bias", None) is not None:
                nn.init.zeros_(m.bias)


class FiLMConv(MessagePassing):
    """Message m_ij = a(e_ij) * pre([h_i, h_j]) + b(e_ij), mean over sources j, then lin(post([h_i, agg_i])).

    i is the edge target (messages aggregate at `edge_index[1]`). `pre` is linear, so it is applied at the
    node level and gathered per edge, which is the same function with far less memory.
    """

    def __init__(self, hid: int) -> None:
        super().__init__(aggr="mean")
        self.hid = hid
        self.edge_encoder = nn.Linear(hid, 2 * hid)
        self.pre_nns = nn.ModuleList([nn.Sequential(nn.Linear(2 * hid, hid))])
        self.post_nns = nn.ModuleList([nn.Sequential(nn.Linear(2 * hid, hid))])
        self.lin = nn.Linear(hid, hid)

    def forward(self, h: torch.Tensor, edge_index: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
        h_tgt, h_src = self.node_terms(h)
        n = h.shape[0]
        agg = self.propagate(edge_index, e=e, h_tgt=h_tgt, h_src=h_src, size=(n, n))
        return self.node_update(h, agg)

    def node_terms(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """`pre` split into its target and source halves: pre([h_i, h_j]) = h_tgt[i] + h_src[j]."""
        pre = self.pre_nns[0][0]
        return F.linear(h, pre.weight[:, : self.hid], pre.bias), F.linear(h, pre.weight[:, self.hid :])

    def node_update(self, h: torch.Tensor, agg: torch.Tensor) -> torch.Tensor:
        """lin(post([h_i, agg_i])): the node output before the activation."""
        return self.lin(self.post_nns[0](torch.cat([h, agg], dim=-1)))

    def message(
        self,
        e: torch.Tensor,
        h_tgt: torch.Tensor,
        h_src: torch.Tensor,
        edge_index_i: torch.Tensor,
        edge_index_j: torch.Tensor,
    ) -> torch.Tensor:
        a, b = self.edge_encoder(e).chunk(2, dim=-1)
        return a * (h_tgt[edge_index_i] + h_src[edge_index_j]) + b


class EdgeUpdate(nn.Module):
    """e_ij <- lin1(SiLU(lin_e(e_ij) + lin_s(h_src) + lin_t(h_dst)))."""

    def __init__(self, hid: int) -> None:
        super().__init__()
        self.lin_e = nn.Linear(hid, hid)
        self.lin_s = nn.Linear(hid, hid)
        self.lin_t = nn.Linear(hid, hid)
        self.lin1 = nn.Linear(hid, hid)

    def forward(self, e: torch.Tensor, h: torch.Tensor, edge_index: torch.Tensor) -> torch.Tensor:
        src, dst = edge_index
        return self.lin1(F.silu(self.lin_e(e) + self.lin_s(h)[src] + self.lin_t(h)[dst]))


class GNN(nn.Module):
    """`layers` FiLM convolutions and `layers - 1` edge updates (keys gnn.convs.*, gnn.edge_update.*)."""

    def __init__(self, hid: int, layers: int) -> None:
        super().__init__()
        self.convs = nn.ModuleList([FiLMConv(hid) for _ in range(layers)])
        self.edge_update = nn.ModuleList([EdgeUpdate(hid) for _ in range(layers - 1)])

    def forward(self, h: torch.Tensor, e: torch.Tensor, edge_index: torch.Tensor) -> torch.Tensor:
        # the last convolution's node output would only feed an edge update that does not exist: skip it
        for conv, update in zip(self.convs, self.edge_update):
            h = F.silu(conv(h, edge_index, e))
            e = update(e, h, edge_index)
        return e


@dataclass
class _Affine:
    """Edge states kept unevaluated as e = x @ weight.T + bias (+ table[types]), so that the linear layers
    reading them fold into one matrix with the layer that wrote them."""

    x: torch.Tensor
    weight: torch.Tensor
    bias: torch.Tensor
    table: torch.Tensor | None = None
    types: torch.Tensor | None = None

    def full(self) -> torch.Tensor:
        """The edge states themselves [E, hid]."""
        e = F.linear(self.x, self.weight, self.bias)
        return e if self.table is None else e + F.embedding(self.types, self.table)

    def through(self, weight: torch.Tensor, bias: torch.Tensor) -> Callable[[slice], torch.Tensor]:
        """slice -> F.linear(e[slice], weight, bias), as one matrix product on x."""
        folded = torch.addmv(bias, weight, self.bias)
        weight_t = (weight @ self.weight).t()
        if self.table is None:
            return lambda sl: torch.addmm(folded, self.x[sl], weight_t)
        typed = torch.addmm(folded, self.table, weight.t())  # [types, outputs]: the type embedding's share
        return lambda sl: torch.addmm(typed.index_select(0, self.types[sl]), self.x[sl], weight_t)

    def sums(self, index: torch.Tensor, count: torch.Tensor) -> torch.Tensor:
        """[n, hid]: the edge states summed over the edges of each index value; count [n]: their numbers."""
        n = count.shape[0]
        x = self.x.new_zeros(n, self.x.shape[1]).index_add_(0, index, self.x)
        out = torch.addmm(torch.outer(count, self.bias), x, self.weight.t())
        if self.table is not None:
            types = self.table.shape[0]
            by_type = torch.bincount(index * types + self.types, minlength=n * types).view(n, types)
            out.addmm_(by_type.to(out.dtype), self.table)
        return out


def _nowcast_edges(
    gnn: GNN, e: _Affine, h: torch.Tensor, edge_index: torch.Tensor, chunk_size: int
) -> _Affine:
    """`GNN.forward` without autograd, chunk by chunk over the edges; the edge states it returns are the last
    update's lin1 applied to its hidden layer silu(lin_e(e) + lin_s(h)[src] + lin_t(h)[dst]), kept in one
    [E, hid] buffer.

    A FiLM convolution sums scale(e) * (h_tgt[dst] + h_src[src]) + shift(e) over the edges of each target;
    only scale(e) * h_src[src] needs each edge's own product: the rest is linear in the summed edge states.
    """
    src, dst = edge_index
    n, hid = h.shape
    pairs = torch.stack([dst, src + n], dim=1)  # each edge's rows of cat([target term, source term])
    chunks = _chunks(src.shape[0], chunk_size)
    count = torch.bincount(dst, minlength=n).to(h.dtype)
    degree = count.clamp(min=1).unsqueeze(1)  # a node no edge reaches averages nothing: 0
    z = h.new_empty(src.shape[0], hid)
    for conv, update in zip(gnn.convs, gnn.edge_update):
        enc, lin_e = conv.edge_encoder, update.lin_e
        film = torch.addmm(torch.outer(count, enc.bias), e.sums(dst, count), enc.weight.t())
        scales, shifts = film.chunk(2, dim=1)  # summed over each target's edges
        rows = e.through(torch.cat([enc.weight[:hid], lin_e.weight]), torch.cat([enc.bias[:hid], lin_e.bias]))
        h_tgt, h_src = conv.node_terms(h)
        total = torch.addcmul(shifts, h_tgt, scales)
        for sl in chunks:
            y = rows(sl)  # [scale(e) | lin_e(e)]
            g = h_src.index_select(0, src[sl])
            total.index_add_(0, dst[sl], g.mul_(y[:, :hid]))
            z[sl] = y[:, hid:]  # chunk sl of e is read: its rows can be overwritten
        h = F.silu(conv.node_update(h, total / degree))
        terms = torch.cat([update.lin_t(h), update.lin_s(h)])
        for sl in chunks:
            zs = z[sl]
            zs += F.embedding_bag(pairs[sl], terms, mode="sum")  # lin_t(h)[dst] + lin_s(h)[src]
            F.silu(zs, inplace=True)
        e = _Affine(z, update.lin1.weight, update.lin1.bias)
    return e


def _feat_size(edge_attr: torch.Tensor, ctx: int, max_feat_size: int, num_edges: int) -> int:
    if edge_attr.ndim != 2 or edge_attr.shape[0] != num_edges or edge_attr.shape[1] % ctx:
        raise DataError(
            f"edge_attr must be [E={num_edges}, feat * ctx] with ctx={ctx}, got {tuple(edge_attr.shape)}"
        )
    feat = edge_attr.shape[1] // ctx
    if not 1 <= feat <= max_feat_size:
        raise DataError(f"edge features hold {feat} slots per edge; this model supports 1..{max_feat_size}")
    return feat


def _check_k(k: int | None, horizon: int) -> None:
    if k is not None and not 1 <= k <= horizon:
        raise ConfigError(f"horizon k={k} is out of range 1..{horizon}")


def _decoder_rows(
    head: nn.Linear, feat: int, horizon: int, k: int | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Weight and bias of the last decoder layer restricted to slots < feat (and to column k - 1 when k is
    given)."""
    if k is None:
        rows = slice(0, feat * horizon)
    else:
        rows = torch.arange(feat, device=head.weight.device) * horizon + (k - 1)
    return head.weight[rows], head.bias[rows]


class NiNoNet(nn.Module):
    """The NiNo GNN (A.6); `forward(data, k)` returns normalised nowcasts with the residual added.

    `snapshot_every` is the step spacing of the states it was meta-trained on (one horizon unit): the paper's
    200 unless `load_nino` read another value from the checkpoint. `chunk_size`: edges per chunk when
    nowcasting (default 2**17 / hid).
    """

    snapshot_every: int = PAPER_SNAPSHOT_EVERY

    def __init__(
        self,
        hid: int = 128,
        layers: int = 3,
        ctx: int = 5,
        horizon: int = 40,
        max_feat_size: int = 9,
        num_edge_types: int = 15,
        lpe_dim: int = 8,
        wte_pos_enc: bool = True,
        vocab: int = 50257,
        gnn: bool = True,
        chunk_size: int | None = None,
    ) -> None:
        super().__init__()
        if not gnn:
            raise ModelError("NiNoNet(gnn=False) is the WNN+ baseline: use WNNPlus or build_nino(gnn=False)")
        if min(hid, layers, ctx, horizon, max_feat_size, num_edge_types, lpe_dim, vocab) < 1:
            raise ConfigError("NiNoNet sizes (hid, layers, ctx, horizon, ...) must all be >= 1")
        self.hid, self.layers, self.ctx, self.horizon = hid, layers, ctx, horizon
        self.max_feat_size, self.num_edge_types, self.lpe_dim = max_feat_size, num_edge_types, lpe_dim
        self.wte_pos_enc, self.vocab = wte_pos_enc, vocab
        self.chunk_size = chunk_size if chunk_size is not None else max(1, CHUNK_FLOATS // hid)
        self.layer_embed = nn.Embedding(num_edge_types, hid)
        self.node_proj = _mlp([lpe_dim, hid])
        self.edge_proj = _mlp([max_feat_size * ctx, hid])
        self.gnn = GNN(hid, layers)
        self.edge_out = _mlp([hid, hid, max_feat_size * horizon])
        if wte_pos_enc:
            self.wte_pos_enc_layer = nn.Embedding(vocab + 1, hid)
        _init_weights(self)

    @property
    def config(self) -> dict[str, Any]:
        """Constructor arguments (the checkpoint's `model_args` keep the non-default ones)."""
        return {
            "hid": self.hid,
            "layers": self.layers,
            "ctx": self.ctx,
            "horizon": self.horizon,
            "max_feat_size": self.max_feat_size,
            "num_edge_types": self.num_edge_types,
            "lpe_dim": self.lpe_dim,
            "wte_pos_enc": self.wte_pos_enc,
            "vocab": self.vocab,
            "gnn": True,
        }

    def _node_input(self, data: Any) -> torch.Tensor:
        x = data.x
        if x is None or x.ndim != 2 or x.shape[1] != self.lpe_dim:
            shape = None if x is None else tuple(x.shape)
            raise DataError(f"data.x must hold [N, {self.lpe_dim}] Laplacian PEs, got {shape}")
        h = self.node_proj(x)
        if self.wte_pos_enc:
            pos_w = getattr(data, "pos_w", None)
            if pos_w is None:
                pos_w = torch.zeros(x.shape[0], dtype=torch.long, device=x.device)
            if pos_w.numel() and int(pos_w.max()) > self.vocab:
                raise DataError(
                    f"token id {int(pos_w.max()) - 1} is outside this NiNo model's vocab of {self.vocab}; "
                    "use a NiNo without token embeddings (wte_pos_enc=False, e.g. nino_no_posw.pt)"
                )
            h = h + self.wte_pos_enc_layer(pos_w)
        return h

    def forward(self, data: Any, k: int | None = None) -> torch.Tensor:
        """[E, feat, horizon] normalised predictions (or [E, feat] for horizon k, 1-based)."""
        _check_k(k, self.horizon)
        edge_index, edge_type = data.edge_index, data.edge_type
        n_edges = edge_index.shape[1]
        feat = _feat_size(data.edge_attr, self.ctx, self.max_feat_size, n_edges)
        if edge_type is None or edge_type.shape != (n_edges,):
            raise DataError(f"data.edge_type must be [E={n_edges}]")
        if n_edges and int(edge_type.max()) >= self.num_edge_types:
            raise DataError(f"edge type {int(edge_type.max())} >= num_edge_types={self.num_edge_types}")
        attr, proj, first = data.edge_attr, self.edge_proj.fc[0], self.edge_out.fc[0]
        cols = feat * self.ctx  # slicing the input weights == zero-padding the features to max_feat_size
        e = _Affine(attr, proj.weight[:, :cols], proj.bias, self.layer_embed.weight, edge_type)
        h = self._node_input(data)
        last = attr.view(n_edges, feat, self.ctx)[:, :, -1]
        if not _chunked():  # meta-training: the modules' own forward passes
            e_full = self.gnn(h, e.full(), edge_index)
            return self._head(lambda sl: first(e_full[sl]), last, feat, k)
        e = _nowcast_edges(self.gnn, e, h, edge_index, self.chunk_size)
        return self._head(e.through(first.weight, first.bias), last, feat, k)

    def _head(
        self, first: Callable[[slice], torch.Tensor], last: torch.Tensor, feat: int, k: int | None
    ) -> torch.Tensor:
        """The residual plus the decoder's output; `first(slice)` is its first layer on those edges."""
        weight, bias = _decoder_rows(self.edge_out.fc[2], feat, self.horizon, k)

        def fn(sl: slice) -> torch.Tensor:
            # in place only without autograd
            delta = F.linear(F.silu(first(sl), inplace=_chunked()), weight, bias)
            if k is None:
                return last[sl].unsqueeze(-1) + delta.view(-1, feat, self.horizon)
            return last[sl] + delta

        n_edges = last.shape[0]
        shape = (n_edges, feat) if k is not None else (n_edges, feat, self.horizon)
        out = last.new_empty(shape) if _chunked() else None
        return _edgewise(fn, n_edges, out, self.chunk_size)


class WNNPlus(nn.Module):
    """WNN+ (A.6): a per-scalar MLP over the c normalised states plus a layer-type embedding, 40 DMS outputs.

    Same forward contract as NiNoNet; the graph is ignored except `edge_type` and `edge_attr`, and every kernel
    slot of an edge is forecast as its own scalar series. `snapshot_every` as in NiNoNet.
    """

    snapshot_every: int = PAPER_SNAPSHOT_EVERY

    def __init__(
        self,
        hid: int = 128,
        ctx: int = 5,
        horizon: int = 40,
        num_edge_types: int = 15,
        mlp_layers: int = 4,
        max_feat_size: int = 9,
        chunk_size: int = CHUNK_SIZE,
    ) -> None:
        super().__init__()
        if min(hid, ctx, horizon, num_edge_types, mlp_layers, max_feat_size) < 1:
            raise ConfigError("WNNPlus sizes must all be >= 1")
        self.hid, self.ctx, self.horizon, self.num_edge_types = hid, ctx, horizon, num_edge_types
        self.mlp_layers, self.max_feat_size, self.chunk_size = mlp_layers, max_feat_size, chunk_size
        self.layer_embed = nn.Embedding(num_edge_types, hid)
        self.edge_proj = _mlp([ctx, hid])
        self.edge_mlp = _mlp([hid] * mlp_layers + [horizon])
        _init_weights(self)

    @property
    def config(self) -> dict[str, Any]:
        return {
            "hid": self.hid,
            "ctx": self.ctx,
            "horizon": self.horizon,
            "num_edge_types": self.num_edge_types,
            "mlp_layers": self.mlp_layers,
            "max_feat_size": self.max_feat_size,
            "gnn": False,
        }

    def forward(self, data: Any, k: int | None = None) -> torch.Tensor:
        _check_k(k, self.horizon)
        n_edges = data.edge_type.shape[0]
        feat = _feat_size(data.edge_attr, self.ctx, self.max_feat_size, n_edges)
        if n_edges and int(data.edge_type.max()) >= self.num_edge_types:
            raise DataError(f"edge type {int(data.edge_type.max())} >= num_edge_types={self.num_edge_types}")
        x = data.edge_attr.reshape(n_edges * feat, self.ctx)
        types = data.edge_type.repeat_interleave(feat)
        body = self.edge_mlp.fc[:-1]
        head = self.edge_mlp.fc[-1]

        def fn(sl: slice) -> torch.Tensor:
            z = body(self.edge_proj(x[sl]) + self.layer_embed(types[sl]))
            if k is None:
                return x[sl, -1:] + head(z)
            return x[sl, -1] + z @ head.weight[k - 1] + head.bias[k - 1]

        shape = (n_edges * feat,) if k is not None else (n_edges * feat, self.horizon)
        out = x.new_empty(shape) if _chunked() else None
        y = _edgewise(fn, n_edges * feat, out, self.chunk_size)
        return y.view(n_edges, feat) if k is not None else y.view(n_edges, feat, self.horizon)


def _defaults(cls: type) -> dict[str, Any]:
    params = list(inspect.signature(cls.__init__).parameters.values())[1:]
    return {p.name: p.default for p in params if p.name != "chunk_size"}


_NINO_DEFAULTS = _defaults(NiNoNet)
_WNN_DEFAULTS = {**_defaults(WNNPlus), "gnn": False}


def check_model_args(model_args: dict[str, Any]) -> bool:
    """Raise ConfigError naming the first unknown key; returns whether the args describe a GNN (not WNN+)."""
    gnn = bool(model_args.get("gnn", True))
    defaults = _NINO_DEFAULTS if gnn else _WNN_DEFAULTS
    unknown = sorted(set(model_args) - set(defaults))
    if unknown:
        kind = "NiNoNet" if gnn else "WNNPlus"
        raise ConfigError(f"unknown NiNo model argument {unknown[0]!r} for {kind}; known: {sorted(defaults)}")
    return gnn


def build_nino(**model_args: Any) -> NiNoNet | WNNPlus:
    """The model a checkpoint's `model_args` describe (missing keys take the defaults; gnn=False -> WNN+)."""
    gnn = check_model_args(model_args)
    args = {k: v for k, v in model_args.items() if k != "gnn"}
    return NiNoNet(**args) if gnn else WNNPlus(**args)


def model_args_of(model: nn.Module) -> dict[str, Any]:
    """The constructor arguments of `model` that differ from the defaults (official `model_args` style)."""
    if not isinstance(model, (NiNoNet, WNNPlus)):
        raise ModelError(f"not a NiNo model: {type(model).__name__}")
    defaults = _NINO_DEFAULTS if isinstance(model, NiNoNet) else _WNN_DEFAULTS
    args = {k: v for k, v in model.config.items() if defaults.get(k) != v}
    return {"gnn": False, **args} if isinstance(model, WNNPlus) else args
