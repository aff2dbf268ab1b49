"""`SnellLinear`: a frozen `nn.Linear` plus a parallel branch whose weight is a sparsified kernel update.

y = W0 x + b0 + drop_path(dropout(x) @ S(K(A, B))^T), with K a kernel over the low-rank factors A (in) and
B (out) and S the competition-based sparsification. The branch is checkpointed (a custom autograd Function), so
the d_out x d_in update is rebuilt in backward instead of being kept between forward and backward: memory between
the two passes is that of LoRA (the input and the factors). Transient memory is small too: forward builds the
update in one d_out x d_in buffer (the threshold needs every entry), and backward (hand-written for the distance
kernel) works on chunks of output rows of about `chunk_elements` entries, so none of its temporaries is full-size.
A fused qkv Linear gets `blocks=3`: three independent kernel updates (q, k, v) stacked along the output
dimension, each sparsified on its own.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from timm.layers import DropPath
from torch import Tensor, nn

from .kernels import DISTANCE_COEFFICIENTS, KERNELS
from .sparsify import CHUNK_ELEMENTS, MaskMode, apply_threshold, mask_weight_, threshold


class SnellLinear(nn.Module):
    """Wraps `base_layer` (frozen) with a SNELL branch of rank `rank`; `merge()` folds the update into W0."""

    def __init__(
        self,
        base_layer: nn.Linear,
        rank: int,
        sparsity: float = 0.0,
        kernel: str = "distance",
        mask: MaskMode = "magnitude",
        blocks: int = 1,
        dropout: float = 0.1,
        drop_path: float = 0.1,
        checkpointing: bool = True,
        chunk_elements: int = CHUNK_ELEMENTS,
    ) -> None:
        super().__init__()
        self.base_layer = base_layer
        self.kernel = KERNELS[kernel]
        self.rank, self.sparsity, self.mask, self.blocks = rank, sparsity, mask, blocks
        self.checkpointing = checkpointing
        # entries of delta W per chunk of rows in the transient buffers (results do not depend on it)
        self.chunk_elements = chunk_elements
        self.merged = False
        self.disabled = False
        d_in, d_out = base_layer.in_features, base_layer.out_features
        if d_out % blocks:
            raise ValueError(f"out_features {d_out} is not divisible by blocks={blocks}")
        heads = self.kernel.heads
        k = rank // heads
        weight = base_layer.weight
        opts = {"device": weight.device, "dtype": weight.dtype}
        self.snell_in = nn.Parameter(torch.empty(blocks, heads, d_in, k, **opts))
        self.snell_out = nn.Parameter(torch.empty(blocks, heads, d_out // blocks, k, **opts))
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        for p in self.base_layer.parameters():
            p.requires_grad_(False)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """The reference's init: kaiming_uniform(a=sqrt(5)) on (heads, d, k) tensors, i.e. U(+-1/sqrt(d k))."""
        k = self.snell_in.shape[-1]
        with torch.no_grad():
            for factor in (self.snell_in, self.snell_out):
                if factor.device.type == "meta":
                    continue
                bound = 1.0 / math.sqrt(factor.shape[-2] * k)
                factor.uniform_(-bound, bound)
            if self.kernel.zero_init_out and self.sparsity == 0 and self.snell_out.device.type != "meta":
                self.snell_out.zero_()  # LoRA's zero init (not with sparsity: a zero update could never grow)

    # --------------------------------------------------------------------------------------------- update

    def delta_weight(self) -> Tensor:
        """The sparsified update (d_out, d_in), with gradient to the factors."""
        return _delta(
            self.snell_in, self.snell_out, self.kernel.name, self.sparsity, self.mask, self.chunk_elements
        )

    def forward(self, x: Tensor) -> Tensor:
        out = self.base_layer(x)
        if self.disabled or self.merged:
            return out
        args = (self.dropout(x), self.snell_in, self.snell_out, self.kernel.name, self.sparsity, self.mask,
                self.chunk_elements)  # fmt: skip
        if self.checkpointing and torch.is_grad_enabled() and self.snell_in.requires_grad:
            branch = _RecomputedBranch.apply(*args)
        else:
            branch = _branch(*args)
        return out + self.drop_path(branch)

    # ---------------------------------------------------------------------------------------------- merge

    @torch.no_grad()
    def merge(self) -> None:
        """Add the sparse update to the frozen weight (outputs unchanged in eval mode, no branch cost)."""
        if not self.merged:
            self.base_layer.weight += self.delta_weight().to(self.base_layer.weight.dtype)
            self.merged = True

    @torch.no_grad()
    def unmerge(self) -> None:
        if self.merged:
            self.base_layer.weight -= self.delta_weight().to(self.base_layer.weight.dtype)
            self.merged = False

    def extra_repr(self) -> str:
        return (
            f"rank={self.rank}, kernel={self.kernel.name}, sparsity={self.sparsity}, mask={self.mask}, "
            f"blocks={self.blocks}"
        )


def _row_chunks(rows: int, cols: int, chunk_elements: int) -> list[tuple[int, int]]:
    """Row ranges of at least `chunk_elements` entries (whole rows); every path uses the same ranges."""
    step = max(1, -(-chunk_elements // max(cols, 1)))
    return [(start, min(start + step, rows)) for start in range(0, rows, step)]


def _raw_rows(in_f: Tensor, out_f: Tensor, kernel: str, start: int, stop: int) -> Tensor:
    """Rows start:stop of one block's kernel update (before sparsification): kappa(out_j, in_i), j in range."""
    return KERNELS[kernel].fn(in_f, out_f[:, start:stop])


def _delta(
    in_f: Tensor, out_f: Tensor, kernel: str, sparsity: float, mask: MaskMode, chunk: int = CHUNK_ELEMENTS
) -> Tensor:
    """The sparsified update (d_out, d_in); with autograd to the factors only when grad is needed."""
    if not (torch.is_grad_enabled() and (in_f.requires_grad or out_f.requires_grad)):
        return _update(in_f, out_f, kernel, sparsity, mask, chunk)[0]
    parts = []
    for blk in range(in_f.shape[0]):
        ranges = _row_chunks(out_f.shape[2], in_f.shape[2], chunk)
        raw = torch.cat([_raw_rows(in_f[blk], out_f[blk], kernel, *r) for r in ranges])
        parts.append(apply_threshold(raw, threshold(raw, sparsity), sparsity, mask))
    return parts[0] if len(parts) == 1 else torch.cat(parts, 0)


@torch.no_grad()
def _update(
    in_f: Tensor, out_f: Tensor, kernel: str, sparsity: float, mask: MaskMode, chunk: int
) -> tuple[Tensor, list[Tensor]]:
    """The sparsified update built in place, and the threshold of each block: one d_out x d_in buffer plus
    chunk-sized temporaries (the same values as `_delta`'s autograd path, chunk by chunk)."""
    blocks, rows, d_in = in_f.shape[0], out_f.shape[2], in_f.shape[2]
    update = in_f.new_empty(blocks * rows, d_in)
    ranges = _row_chunks(rows, d_in, chunk)
    limits = []
    for blk in range(blocks):
        block = update[blk * rows : (blk + 1) * rows]
        for start, stop in ranges:
            block[start:stop] = _raw_rows(in_f[blk], out_f[blk], kernel, start, stop)
        limit = threshold(block, sparsity)
        limits.append(limit)
        if sparsity > 0:
            for start, stop in ranges:
                part = block[start:stop]
                part.mul_(mask_weight_(part.abs(), limit, mask))
    return update, limits


def _branch(
    x: Tensor, in_f: Tensor, out_f: Tensor, kernel: str, sparsity: float, mask: MaskMode, chunk: int
) -> Tensor:
    return F.linear(x, _delta(in_f, out_f, kernel, sparsity, mask, chunk).to(x.dtype))


class _RecomputedBranch(torch.autograd.Function):
    """x @ S(K(A, B))^T saving only x, the factors and one threshold per block; backward rebuilds the update.

    Activation checkpointing specialised to the branch: the pruning thresholds found in forward are kept (a
    scalar each), so backward rebuilds delta W chunk by chunk of output rows, without a second selection, and
    gets the same mask.
    """

    @staticmethod
    def forward(ctx, x, in_f, out_f, kernel, sparsity, mask, chunk):  # type: ignore[override]
        update, limits = _update(in_f, out_f, kernel, sparsity, mask, chunk)
        out = F.linear(x, update.to(x.dtype))
        del update
        ctx.save_for_backward(x, in_f, out_f, *limits)
        ctx.settings = (kernel, sparsity, mask, chunk)
        return out

    @staticmethod
    def backward(ctx, grad_out):  # type: ignore[override]
        x, in_f, out_f, *limits = ctx.saved_tensors
        kernel, sparsity, mask, chunk = ctx.settings
        backward = _distance_backward if kernel == "distance" else _autograd_backward
        grad_x, grad_in, grad_out_f = backward(
            grad_out, x, in_f, out_f, limits, (kernel, sparsity, mask, chunk), ctx.needs_input_grad[0]
        )
        return grad_x, grad_in, grad_out_f, None, None, None, None


def _flat(grad_out: Tensor, x: Tensor, dtype: torch.dtype) -> tuple[Tensor, Tensor]:
    return grad_out.reshape(-1, grad_out.shape[-1]).to(dtype), x.reshape(-1, x.shape[-1]).to(dtype)


def _autograd_backward(grad_out, x, in_f, out_f, limits, settings, need_x):
    """Backward of any kernel by autograd, one chunk of output rows at a time (chunk-sized graphs)."""
    kernel, sparsity, mask, chunk = settings
    flat_g, flat_x = _flat(grad_out, x, in_f.dtype)
    rows = out_f.shape[2]
    grad_x = torch.zeros_like(flat_x) if need_x else None
    with torch.enable_grad():
        in_d, out_d = in_f.detach().requires_grad_(), out_f.detach().requires_grad_()
        for blk in range(in_f.shape[0]):
            for start, stop in _row_chunks(rows, in_f.shape[2], chunk):
                raw = _raw_rows(in_d[blk], out_d[blk], kernel, start, stop)
                part = apply_threshold(raw, limits[blk], sparsity, mask)
                g = flat_g[:, blk * rows + start : blk * rows + stop]
                if grad_x is not None:
                    grad_x.addmm_(g, part.detach())
                torch.autograd.backward(part, g.T @ flat_x)
    grad_x = None if grad_x is None else grad_x.reshape(x.shape).to(x.dtype)
    return grad_x, in_d.grad, out_d.grad


def _distance_backward(grad_out, x, in_f, out_f, limits, settings, need_x):
    """Hand-written backward of the distance-kernel branch, one chunk of output rows at a time.

    With D_h = ||b_j - a_i||, delta = sum_h c_h D_h and G the gradient w.r.t. delta (through the fixed mask),
    G_h = c_h G / D_h gives grad b = rowsum(G_h) b - G_h a and grad a = colsum(G_h) a - G_h^T b. Rows of G_h
    only need the same rows of b, so every temporary is a chunk of rows (the distances of a chunk are computed
    once and serve both the rebuilt update and G_h).
    """
    _, sparsity, mask, chunk = settings
    coefficients = DISTANCE_COEFFICIENTS
    flat_g, flat_x = _flat(grad_out, x, in_f.dtype)
    blocks, heads, d_in = in_f.shape[:3]
    rows = out_f.shape[2]
    grad_in, grad_out_f = torch.zeros_like(in_f), torch.zeros_like(out_f)
    grad_x = torch.zeros_like(flat_x) if need_x else None
    for blk in range(blocks):
        a, b = in_f[blk], out_f[blk]
        colsum = in_f.new_zeros(heads, d_in)
        for start, stop in _row_chunks(rows, d_in, chunk):
            rows_b = b[:, start:stop]
            dists = [torch.cdist(rows_b[h], a[h]) for h in range(heads)]
            raw = coefficients[0] * dists[0]  # the operations of kernels.distance_kernel: the same mask
            for h in range(1, heads):
                raw = raw.add_(coefficients[h] * dists[h])
            g = flat_g[:, blk * rows + start : blk * rows + stop]
            weight = mask_weight_(raw.abs(), limits[blk], mask) if sparsity > 0 else None
            if grad_x is not None:
                grad_x.addmm_(g, raw if weight is None else raw.mul_(weight))  # raw: the masked update
            del raw
            grad = g.T @ flat_x
            if weight is not None:
                grad.mul_(weight)
            del weight
            dists.reverse()
            for h in range(heads):
                dist = dists.pop()  # freed after its head
                gh = (grad * coefficients[h]).div_(dist).masked_fill_(dist == 0, 0)
                del dist
                grad_out_f[blk, h, start:stop] = gh.sum(1, keepdim=True) * rows_b[h] - gh @ a[h]
                grad_in[blk, h].addmm_(gh.T, rows_b[h], alpha=-1)
                colsum[h] += gh.sum(0)
            del grad, gh
        grad_in[blk] += colsum.unsqueeze(2) * a
    grad_x = None if grad_x is None else grad_x.reshape(x.shape).to(x.dtype)
    return grad_x, grad_in, grad_out_f
