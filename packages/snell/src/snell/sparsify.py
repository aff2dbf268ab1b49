"""Competition-based sparsification: keep the largest (1 - sparsity) fraction of |delta W|, every forward.

No indices are stored: which entries survive follows from the current values of the factors, so weights
"compete" for the kept slots. The threshold comes from `torch.kthvalue` (no size limit, unlike
`torch.quantile`, which has refused inputs above 2**24 elements, e.g. LLM-sized matrices).
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import Tensor

MaskMode = Literal["magnitude", "binary"]


def kept_count(numel: int, sparsity: float) -> int:
    """How many entries survive: numel - floor(sparsity * numel), i.e. 1 - sparsity within one entry."""
    return numel - math.floor(sparsity * numel)


def threshold(delta: Tensor, sparsity: float) -> Tensor:
    """The magnitude at or below which entries are pruned (-inf when nothing is pruned)."""
    dropped = math.floor(sparsity * delta.numel())
    if dropped == 0:
        return torch.tensor(float("-inf"), dtype=delta.dtype, device=delta.device)
    return delta.detach().abs().flatten().kthvalue(dropped).values


def apply_threshold(delta: Tensor, limit: Tensor, sparsity: float, mask: MaskMode = "magnitude") -> Tensor:
    """Zero entries with |delta| <= limit; `magnitude` also scales kept entries by the detached |delta|."""
    if sparsity <= 0.0:
        return delta
    magnitude = delta.detach().abs()
    keep = magnitude > limit
    weight = magnitude * keep if mask == "magnitude" else keep.to(delta.dtype)
    return delta * weight


def sparsify(delta: Tensor, sparsity: float, mask: MaskMode = "magnitude") -> Tensor:
    """Zero the `sparsity` fraction of entries of `delta` with the smallest magnitude.

    `magnitude` (the reference): kept entries become delta * |delta| (the detached magnitude is the mask).
    `binary` (the paper's description): kept entries stay delta (a 0/1 mask). The mask carries no gradient,
    so pruned entries get zero gradient. `sparsity=0` returns `delta` itself (the plain kernel update).
    """
    if sparsity <= 0.0:
        return delta
    return apply_threshold(delta, threshold(delta, sparsity), sparsity, mask)
