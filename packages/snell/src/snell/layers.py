"""`SnellLinear`: a frozen `nn.Linear` plus a parallel branch whose weight is a sparsified kernel update.

y = W0 x + b0 + drop_path(dropout(x) @ S(K(A, B))^T), with K a kernel over the low-rank factors A (in) and
B (out) and S the competition-based sparsification. The branch is checkpointed (a custom autograd Function), so
the d_out x d_in update is rebuilt in backward instead of being kept between forward and backward: memory between
the two passes is that of LoRA (the input and the factors). The distance kernel has a hand-written backward
that rebuilds the update one head at a time, so the transient peak is a few d_out x d_in buffers. A fused qkv Linear gets `blocks=3`: three
independent kernel updates (q, k, v) stacked along the output dimension, each sparsified on its own.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from timm.layers import DropPath
from torch import Tensor, nn

from .kernels import DISTANCE_COEFFICIENTS, KERNELS
from .sparsify import MaskMode, apply_threshold, threshold


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
    ) -> None:
        super().__init__()
        self.base_layer = base_layer
        self.kernel = KERNELS[kernel]
        self.rank, self.sparsity, self.mask, self.blocks = rank, sparsity, mask, blocks
        self.checkpointing = checkpointing
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
        return _delta(self.snell_in, self.snell_out, self.kernel.name, self.sparsity, self.mask)

    def forward(self, x: Tensor) -> Tensor:
        out = self.base_layer(x)
        if self.disabled or self.merged:
            return out
        args = (self.dropout(x), self.snell_in, self.snell_out, self.kernel.name, self.sparsity, self.mask)
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


def _raw(in_f: Tensor, out_f: Tensor, kernel: str) -> list[Tensor]:
    """The kernel update of each output block (before sparsification)."""
    fn = KERNELS[kernel].fn
    return [fn(in_f[b], out_f[b]) for b in range(in_f.shape[0])]


def _masked(raw: list[Tensor], limits: list[Tensor], sparsity: float, mask: MaskMode) -> Tensor:
    parts = [apply_threshold(d, t, sparsity, mask) for d, t in zip(raw, limits, strict=True)]
    return parts[0] if len(parts) == 1 else torch.cat(parts, 0)


def _delta(in_f: Tensor, out_f: Tensor, kernel: str, sparsity: float, mask: MaskMode) -> Tensor:
    raw = _raw(in_f, out_f, kernel)
    return _masked(raw, [threshold(d, sparsity) for d in raw], sparsity, mask)


def _branch(x: Tensor, in_f: Tensor, out_f: Tensor, kernel: str, sparsity: float, mask: MaskMode) -> Tensor:
    return F.linear(x, _delta(in_f, out_f, kernel, sparsity, mask))


class _RecomputedBranch(torch.autograd.Function):
    """x @ S(K(A, B))^T saving only x, the factors and one threshold per block; backward rebuilds the update.

    Activation checkpointing specialised to the branch: the pruning thresholds found in forward are kept (a
    scalar each), so backward rebuilds delta W without a second `kthvalue` and gets the same mask.
    """

    @staticmethod
    def forward(ctx, x, in_f, out_f, kernel, sparsity, mask):  # type: ignore[override]
        with torch.no_grad():
            raw = _raw(in_f, out_f, kernel)
            limits = [threshold(d, sparsity) for d in raw]
            out = F.linear(x, _masked(raw, limits, sparsity, mask))
        ctx.save_for_backward(x, in_f, out_f, *limits)
        ctx.settings = (kernel, sparsity, mask)
        return out

    @staticmethod
    def backward(ctx, grad_out):  # type: ignore[override]
        x, in_f, out_f, *limits = ctx.saved_tensors
        kernel, sparsity, mask = ctx.settings
        if kernel == "distance":
            return (*_distance_backward(grad_out, x, in_f, out_f, limits, sparsity, mask), None, None, None)
        with torch.enable_grad():
            in_d, out_d = in_f.detach().requires_grad_(), out_f.detach().requires_grad_()
            delta = _masked(_raw(in_d, out_d, kernel), limits, sparsity, mask)
            grad_x = grad_out @ delta.detach().to(grad_out.dtype) if ctx.needs_input_grad[0] else None
            grad_delta = grad_out.reshape(-1, grad_out.shape[-1]).T @ x.reshape(-1, x.shape[-1]).to(
                grad_out.dtype
            )
            in_grad, out_grad = torch.autograd.grad(delta, (in_d, out_d), grad_delta.to(delta.dtype))
        return grad_x, in_grad, out_grad, None, None, None


def _distance_backward(grad_out, x, in_f, out_f, limits, sparsity, mask):
    """Hand-written backward of the distance-kernel branch: a few d_out x d_in buffers, one head at a time.

    With D_h = ||b_j - a_i||, delta = sum_h c_h D_h and G the gradient w.r.t. delta (through the fixed mask),
    G_h = c_h G / D_h gives grad b = rowsum(G_h) b - G_h a and grad a = colsum(G_h) a - G_h^T b.
    """
    coefficients = DISTANCE_COEFFICIENTS
    flat_x = x.reshape(-1, x.shape[-1]).to(in_f.dtype)
    flat_g = grad_out.reshape(-1, grad_out.shape[-1]).to(in_f.dtype)
    blocks, rows = in_f.shape[0], out_f.shape[2]
    grad_in, grad_out_f = torch.zeros_like(in_f), torch.zeros_like(out_f)
    grad_x = torch.zeros_like(flat_x)
    for blk in range(blocks):
        a, b = in_f[blk], out_f[blk]
        raw = torch.cdist(b[0], a[0]).mul_(coefficients[0])
        for h in range(1, a.shape[0]):  # the same operations as kernels.distance_kernel, so the same mask
            raw.add_(torch.cdist(b[h], a[h]).mul_(coefficients[h]))
        g = flat_g[:, blk * rows : (blk + 1) * rows]
        if sparsity > 0:
            magnitude = raw.abs()
            keep = magnitude > limits[blk]
            weight = magnitude.mul_(keep) if mask == "magnitude" else keep.to(raw.dtype)
            del magnitude, keep
            grad_x.addmm_(g, raw.mul_(weight))  # raw now holds the masked update
            grad = (g.T @ flat_x).mul_(weight)
            del weight
        else:
            grad_x.addmm_(g, raw)
            grad = g.T @ flat_x
        del raw
        for h in range(a.shape[0]):
            dist = torch.cdist(b[h], a[h])
            gh = torch.where(dist > 0, grad * coefficients[h] / dist, torch.zeros_like(dist))
            del dist
            grad_out_f[blk, h] = gh.sum(1, keepdim=True) * b[h] - gh @ a[h]
            grad_in[blk, h] = gh.sum(0).unsqueeze(1) * a[h] - gh.T @ b[h]
    return grad_x.reshape(x.shape).to(x.dtype), grad_in, grad_out_f
