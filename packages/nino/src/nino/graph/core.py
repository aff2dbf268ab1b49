"""The neural graph of a network (`NeuralGraph`) and the vectorised builder every architecture uses.

Nodes are neurons (plus one auxiliary node per 1-D parameter, head nodes, token/position nodes); every scalar
parameter sits on exactly one (edge, spatial slot). The bijection flat-parameter position <-> (edge, slot) is
kept as two index tensors (`param_edge`, `param_slot`), so moving values between the flat parameter vector
(the model's own `named_parameters()` layout) and edge features is pure tensor indexing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch
from torch import nn

from learngene_core.errors import ModelError

if TYPE_CHECKING:
    from torch_geometric.data import Data

__all__ = [
    "EDGE_TYPES",
    "GraphBuilder",
    "NeuralGraph",
    "flatten_params",
    "write_params",
]

#: Edge-type ids of spec A.4.1 (the NiNo type embedding has 15 rows).
EDGE_TYPES: dict[int, str] = {
    0: "padding",
    1: "linear",
    2: "bias",
    3: "conv",
    4: "norm",
    5: "token_embedding",
    6: "position_embedding",
    7: "attn_query",
    8: "attn_key",
    9: "attn_value",
    10: "residual",
    11: "head",
    12: "reserved",
    13: "self_loop",
    14: "reserved_14",
}
SELF_LOOP, RESIDUAL, HEAD = 13, 10, 11
#: Slot-0 constants written on edges that carry no parameter (spec A.4.3).
_CONSTANTS = {SELF_LOOP: 2.0, RESIDUAL: 1.0, HEAD: 1.0}


@dataclass(eq=False)
class NeuralGraph:
    """A network as a graph: `edge_index` [2, E] (src -> dst), `edge_type` [E], `pos_w` [N].

    Beyond the shared interface: `param_edge` / `param_slot` ([P] each) give the edge and spatial slot of
    every flat parameter position, `arch` names the builder used ("mlp_cnn", "gpt2", "llama", "vit").
    """

    edge_index: torch.Tensor
    edge_type: torch.Tensor
    num_nodes: int
    pos_w: torch.Tensor
    max_feat_size: int
    param_names: list[str]
    param_shapes: list[torch.Size]
    param_edge: torch.Tensor = field(repr=False, default_factory=lambda: torch.zeros(0, dtype=torch.long))
    param_slot: torch.Tensor = field(repr=False, default_factory=lambda: torch.zeros(0, dtype=torch.long))
    arch: str = "mlp_cnn"
    _lpe_cache: dict[int, torch.Tensor] = field(default_factory=dict, repr=False)
    _const_cache: tuple[torch.Tensor, torch.Tensor] | None = field(default=None, repr=False)

    # ------------------------------------------------------------------------------------------ sizes
    @property
    def num_edges(self) -> int:
        """Number of edges E (parameter edges + residual/head pseudo edges + self-loops)."""
        return int(self.edge_type.numel())

    @property
    def num_params(self) -> int:
        """Total number of scalar parameters P."""
        return int(self.param_edge.numel())

    @property
    def param_sizes(self) -> list[int]:
        """Number of elements of each parameter tensor, in `param_names` order."""
        return [int(torch.Size(s).numel()) for s in self.param_shapes]

    @property
    def param_edge_mask(self) -> torch.Tensor:
        """[E] bool, True on edges that carry real parameters."""
        mask = torch.zeros(self.num_edges, dtype=torch.bool)
        mask[self.param_edge] = True
        return mask

    def param_slot_mask(self, feat_size: int | None = None) -> torch.Tensor:
        """[E, feat_size] bool, True on the (edge, slot) cells that hold a real parameter (loss mask)."""
        mask = torch.zeros(self.num_edges, self._feat_size(feat_size), dtype=torch.bool)
        mask[self.param_edge, self.param_slot] = True
        return mask

    # ------------------------------------------------------------------------------------------ features
    def edge_features(self, states: torch.Tensor, feat_size: int | None = None) -> torch.Tensor:
        """Flat parameter histories [P, c] (or one state [P]) -> edge features [E, feat_size * c].

        Layout index s * c + tau (spatial-major, time-minor). Self-loops get 2 and residual/head edges 1 in
        slot 0 for every state; everything else not covered by a parameter is 0.
        """
        if states.dim() == 1:
            states = states[:, None]
        if states.dim() != 2 or states.shape[0] != self.num_params:
            raise ModelError(
                f"states must have shape [{self.num_params}, c] for this graph, got {tuple(states.shape)}"
            )
        size = self._feat_size(feat_size)
        c = states.shape[1]
        out = states.new_zeros(self.num_edges, size, c)
        out[self.param_edge, self.param_slot] = states
        const_edges, const_vals = self._constants()
        out[const_edges, 0, :] = const_vals.to(states.dtype)[:, None]
        return out.reshape(self.num_edges, size * c)

    def params_from_edges(self, values: torch.Tensor) -> torch.Tensor:
        """Edge values [E, feat_size] (feat_size >= max_feat_size) -> flat parameters [P].

        Extra trailing dimensions are kept ([E, F, k] -> [P, k]); pseudo edges and padding are ignored.
        """
        if values.dim() < 2 or values.shape[0] != self.num_edges or values.shape[1] < self.max_feat_size:
            raise ModelError(
                f"values must have shape [{self.num_edges}, >={self.max_feat_size}], got {tuple(values.shape)}"
            )
        return values[self.param_edge, self.param_slot]

    def _feat_size(self, feat_size: int | None) -> int:
        size = self.max_feat_size if feat_size is None else int(feat_size)
        if size < self.max_feat_size:
            raise ModelError(
                f"feat_size {size} is smaller than this graph's max_feat_size {self.max_feat_size}"
            )
        return size

    def _constants(self) -> tuple[torch.Tensor, torch.Tensor]:
        if self._const_cache is None:
            vals = torch.zeros(self.num_edges)
            for etype, value in _CONSTANTS.items():
                vals[self.edge_type == etype] = value
            edges = torch.nonzero(vals, as_tuple=True)[0]
            self._const_cache = (edges, vals[edges])
        return self._const_cache

    # ------------------------------------------------------------------------------------------ node features
    def lpe(self, k: int = 8) -> torch.Tensor:
        """[N, k] Laplacian eigenvector positional encoding (float32, cached per k; see `nino.graph.lpe`)."""
        if k not in self._lpe_cache:
            from nino.graph.lpe import laplacian_pe

            self._lpe_cache[k] = laplacian_pe(self.edge_index, self.num_nodes, k)
        return self._lpe_cache[k]

    def to_pyg(self, edge_attr: torch.Tensor, lpe: torch.Tensor | None = None) -> Data:
        """A torch_geometric `Data` with x = LPE [N, 8] (or `lpe`), edge_index, edge_attr, edge_type, pos_w."""
        from torch_geometric.data import Data

        if edge_attr.shape[0] != self.num_edges:
            raise ModelError(f"edge_attr has {edge_attr.shape[0]} rows, the graph has {self.num_edges} edges")
        x = self.lpe() if lpe is None else lpe
        return Data(
            x=x,
            edge_index=self.edge_index,
            edge_attr=edge_attr,
            edge_type=self.edge_type,
            pos_w=self.pos_w,
            num_nodes=self.num_nodes,
        )

    # ------------------------------------------------------------------------------------------ reporting
    def type_counts(self) -> dict[str, int]:
        """Edge counts by type name (only types present), in type-id order."""
        counts = torch.bincount(self.edge_type, minlength=len(EDGE_TYPES))
        return {EDGE_TYPES[i]: int(n) for i, n in enumerate(counts.tolist()) if n}

    def describe(self) -> str:
        """A few lines for `nino graph`: architecture, node/edge/parameter counts, edges by type."""
        n_param_edges = int(self.param_edge_mask.sum())
        n_self = int((self.edge_type == SELF_LOOP).sum())
        lines = [
            f"architecture: {self.arch}",
            f"nodes: {self.num_nodes:,} (token nodes: {int((self.pos_w > 0).sum()):,})",
            f"edges: {self.num_edges:,} (parameter edges {n_param_edges:,}, "
            f"pseudo edges {self.num_edges - n_param_edges - n_self:,}, self-loops {n_self:,})",
            f"parameters: {self.num_params:,} in {len(self.param_names)} tensors",
            f"max_feat_size: {self.max_feat_size}",
            "edges by type:",
        ]
        names = {v: k for k, v in EDGE_TYPES.items()}
        lines += [f"  {names[name]:>2} {name:<20} {n:>12,}" for name, n in self.type_counts().items()]
        return "\n".join(lines)


class GraphBuilder:
    """Accumulates nodes and edges block by block (one vectorised call per parameter tensor).

    Architecture modules call `index(name)` to get the flat positions of a parameter as a tensor shaped like
    it, rearrange that tensor to [n_src, n_dst(, slots)], and hand it to `dense` / `aux`.
    """

    def __init__(self, names: list[str], shapes: list[torch.Size]):
        if len(set(names)) != len(names):
            raise ModelError("duplicate parameter names in the model")
        self.names, self.shapes = names, [torch.Size(s) for s in shapes]
        self._offsets: dict[str, int] = {}
        offset = 0
        for name, shape in zip(self.names, self.shapes, strict=True):
            if len(shape) == 0:
                raise ModelError(f"parameter {name} is a 0-d scalar; scalar parameters are not supported")
            self._offsets[name] = offset
            offset += shape.numel()
        self.total = offset
        self.num_nodes = 0
        self.used: set[str] = set()
        self.max_feat_size = 1
        self._pos_w: list[tuple[torch.Tensor, torch.Tensor]] = []
        self._src: list[torch.Tensor] = []
        self._dst: list[torch.Tensor] = []
        self._type: list[torch.Tensor] = []
        self._flat: list[torch.Tensor] = []
        self._edge_of: list[torch.Tensor] = []
        self._slot_of: list[torch.Tensor] = []
        self.num_edges = 0

    def has(self, name: str) -> bool:
        return name in self._offsets

    def shape(self, name: str) -> torch.Size:
        return self.shapes[self.names.index(name)]

    def index(self, name: str) -> torch.Tensor:
        """Flat positions of parameter `name`, shaped like the parameter; marks it as consumed."""
        if name not in self._offsets:
            raise ModelError(f"expected parameter {name!r} is missing from the model")
        if name in self.used:
            raise ModelError(f"parameter {name!r} is used twice while building the graph")
        self.used.add(name)
        shape = self.shapes[self.names.index(name)]
        start = self._offsets[name]
        return torch.arange(start, start + shape.numel()).view(shape)

    def nodes(self, n: int, pos_w: torch.Tensor | None = None) -> torch.Tensor:
        """Create `n` new nodes (optionally with token ids + 1 in `pos_w`) and return their ids."""
        ids = torch.arange(self.num_nodes, self.num_nodes + n)
        self.num_nodes += n
        if pos_w is not None:
            self._pos_w.append((ids, pos_w.long()))
        return ids

    def _add(self, src: torch.Tensor, dst: torch.Tensor, etype: int) -> torch.Tensor:
        e = torch.arange(self.num_edges, self.num_edges + src.numel())
        self._src.append(src.reshape(-1))
        self._dst.append(dst.reshape(-1))
        self._type.append(torch.full((src.numel(),), etype, dtype=torch.long))
        self.num_edges += src.numel()
        return e

    def dense(self, src: torch.Tensor, dst: torch.Tensor, idx: torch.Tensor, etype: int) -> None:
        """Complete bipartite block src x dst; idx [len(src), len(dst)(, S)] holds the flat positions."""
        if idx.dim() == 2:
            idx = idx.unsqueeze(-1)
        ns, nd, slots = idx.shape
        if ns != src.numel() or nd != dst.numel():
            raise ModelError(f"internal shape mismatch: {tuple(idx.shape)} vs {src.numel()} x {dst.numel()}")
        e = self._add(src.repeat_interleave(nd), dst.repeat(ns), etype)
        self._flat.append(idx.reshape(-1))
        self._edge_of.append(e.repeat_interleave(slots))
        self._slot_of.append(torch.arange(slots).repeat(e.numel()))
        self.max_feat_size = max(self.max_feat_size, slots)

    def aux(self, idx: torch.Tensor, dst: torch.Tensor, etype: int) -> None:
        """One auxiliary node with one edge to each of `dst`, carrying the 1-D parameter positions `idx`."""
        if idx.numel() != dst.numel():
            raise ModelError(
                f"internal: 1-D parameter of length {idx.numel()} attached to {dst.numel()} nodes"
            )
        self.dense(self.nodes(1), dst, idx.reshape(1, -1), etype)

    def aux_param(self, name: str, dst: torch.Tensor, etype: int | None = None) -> None:
        """`aux` for a whole 1-D parameter; type 4 for names ending in `weight`, else 2 (unless given)."""
        idx = self.index(name)
        if idx.numel() != dst.numel():
            raise ModelError(
                f"parameter {name} has {idx.numel()} values but its layer has {dst.numel()} neurons"
            )
        self.aux(idx, dst, etype if etype is not None else (4 if name.endswith("weight") else 2))

    def fixed(self, src: torch.Tensor, dst: torch.Tensor, etype: int) -> None:
        """Pseudo edges src[i] -> dst[i] carrying no parameter (residual 10, head 11)."""
        self._add(src, dst, etype)

    def finish(self, arch: str) -> NeuralGraph:
        """Add self-loops, check every parameter was placed exactly once, return the graph."""
        leftover = [n for n in self.names if n not in self.used]
        if leftover:
            raise ModelError(f"unsupported parameter {leftover[0]!r} for a {arch} graph")
        nodes = torch.arange(self.num_nodes)
        self._add(nodes, nodes, SELF_LOOP)
        flat = torch.cat(self._flat) if self._flat else torch.zeros(0, dtype=torch.long)
        covered = torch.bincount(flat, minlength=self.total)
        if flat.numel() != self.total or bool((covered != 1).any()):
            raise ModelError(f"internal: {arch} graph does not place every parameter exactly once")
        param_edge = torch.empty(self.total, dtype=torch.long)
        param_slot = torch.empty(self.total, dtype=torch.long)
        param_edge[flat] = torch.cat(self._edge_of)
        param_slot[flat] = torch.cat(self._slot_of)
        pos_w = torch.zeros(self.num_nodes, dtype=torch.long)
        for ids, vals in self._pos_w:
            pos_w[ids] = vals
        return NeuralGraph(
            edge_index=torch.stack([torch.cat(self._src), torch.cat(self._dst)]),
            edge_type=torch.cat(self._type),
            num_nodes=self.num_nodes,
            pos_w=pos_w,
            max_feat_size=self.max_feat_size,
            param_names=list(self.names),
            param_shapes=list(self.shapes),
            param_edge=param_edge,
            param_slot=param_slot,
            arch=arch,
        )


def flatten_params(model: nn.Module) -> torch.Tensor:
    """All parameters (tied ones once) as one flat detached float32 CPU vector [P], in graph order."""
    params = [p.detach().reshape(-1).to("cpu", torch.float32) for p in model.parameters()]
    return torch.cat(params) if params else torch.zeros(0)


@torch.no_grad()
def write_params(model: nn.Module, flat: torch.Tensor) -> None:
    """Copy a flat vector [P] into the model's parameters in place (dtype and device preserved)."""
    params = list(model.parameters())
    total = sum(p.numel() for p in params)
    if flat.dim() != 1 or flat.numel() != total:
        raise ModelError(f"flat parameter vector has shape {tuple(flat.shape)}, the model has {total} params")
    offset = 0
    for p in params:
        n = p.numel()
        p.copy_(flat[offset : offset + n].view_as(p).to(device=p.device, dtype=p.dtype))
        offset += n
