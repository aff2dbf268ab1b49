"""Kernels that turn two low-rank factor sets into a full update matrix: `delta[j, i] = kappa(out_j, in_i)`.

A kernel takes `in_f` of shape (heads, d_in, k) and `out_f` of shape (heads, d_out, k) and returns the update
(d_out, d_in), laid out like an `nn.Linear` weight. LoRA is the linear kernel `B A^T`; SNELL's reference kernel
is a difference of two Euclidean-distance kernels, which is generally full rank although the factors are not.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

# The kernels import torch when they run, so `snell list` reads this table without it.
if TYPE_CHECKING:
    from torch import Tensor

# the reference's fixed, non-trainable head coefficients c_h = 0.1 * (-1)^h
DISTANCE_COEFFICIENTS = (0.1, -0.1)


@dataclass(frozen=True)
class Kernel:
    """A named kernel: how many heads share the rank, its function, and whether it is experimental."""

    name: str
    heads: int  # the rank r is split into `heads` equal parts of r / heads columns
    fn: Callable[[Tensor, Tensor], Tensor]
    experimental: bool = False
    zero_init_out: bool = False  # LoRA's init: out factors start at zero so the first update is zero
    help: str = ""


def _coefficients(in_f: Tensor) -> Tensor:
    import torch

    return torch.tensor(DISTANCE_COEFFICIENTS, dtype=in_f.dtype, device=in_f.device).view(-1, 1, 1)


def distance_kernel(in_f: Tensor, out_f: Tensor) -> Tensor:
    """The reference kernel: 0.1 * ||out1_j - in1_i|| - 0.1 * ||out2_j - in2_i|| (Euclidean distances)."""
    import torch

    total = DISTANCE_COEFFICIENTS[0] * torch.cdist(out_f[0], in_f[0])
    for h in range(1, in_f.shape[0]):  # head by head, in the order the hand-written backward rebuilds it
        total = total + DISTANCE_COEFFICIENTS[h] * torch.cdist(out_f[h], in_f[h])
    return total


def linear_kernel(in_f: Tensor, out_f: Tensor) -> Tensor:
    """LoRA: the inner product, delta = B A^T (one head holding the whole rank)."""
    import torch

    return torch.einsum("hok,hik->oi", out_f, in_f)


def rbf_kernel(in_f: Tensor, out_f: Tensor) -> Tensor:
    """Experimental: 0.1 * exp(-||out1_j - in1_i||^2) - 0.1 * exp(-||out2_j - in2_i||^2)."""
    import torch

    return (_coefficients(in_f) * torch.exp(-torch.cdist(out_f, in_f, p=2.0).square())).sum(0)


def sigmoid_kernel(in_f: Tensor, out_f: Tensor) -> Tensor:
    """Experimental: 0.1 * tanh(out1_j . in1_i) - 0.1 * tanh(out2_j . in2_i)."""
    import torch

    return (_coefficients(in_f) * torch.tanh(out_f @ in_f.transpose(1, 2))).sum(0)


KERNELS: dict[str, Kernel] = {
    k.name: k
    for k in (
        Kernel("distance", 2, distance_kernel, help="the reference's kernel (default)"),
        Kernel("linear", 1, linear_kernel, zero_init_out=True, help="LoRA, B A^T (for ablations)"),
        Kernel("rbf", 2, rbf_kernel, experimental=True, help="Gaussian kernel (experimental)"),
        Kernel("sigmoid", 2, sigmoid_kernel, experimental=True, help="tanh kernel (experimental)"),
    )
}
