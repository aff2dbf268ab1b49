"""Competition-based sparsification: keep the largest (1 - sparsity) fraction of |delta W|, every forward.

How many entries are pruned follows the reference exactly: it thresholds at `torch.quantile(|delta W|, s)`
(linear interpolation at rank s * (n - 1)) and zeroes every entry at or below it, so it prunes
floor(s * (n - 1)) + 1 entries (for s > 0, without ties), one more than floor(s * n) at many sparsities.

No indices are stored: which entries survive follows from the current values of the factors, so weights
"compete" for the kept slots. The threshold is the exact k-th smallest magnitude, found by a two-pass radix
select over chunks (`kth_smallest_magnitude`): it equals `torch.kthvalue`'s, without kthvalue's full-size copy
and int64 index buffer, and has no size limit (unlike `torch.quantile`, which has refused inputs above 2**24
elements, e.g. LLM-sized matrices).
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import Tensor

MaskMode = Literal["magnitude", "binary"]

CHUNK_ELEMENTS = 1 << 18  # entries per chunk of the transient buffers (1 MiB in float32)
_RADIX_DTYPES = (torch.float32, torch.float16, torch.bfloat16)  # exactly representable in float32


def _quantile_rank(numel: int, sparsity: float, dtype: torch.dtype) -> float:
    """torch.quantile's rank of `sparsity` among `numel` sorted values: q * (n - 1), with q rounded to the
    input's dtype (a float32 q for float32 inputs) and the product kept in double precision."""
    q = sparsity if dtype == torch.float64 else float(torch.tensor(sparsity, dtype=torch.float32))
    return q * (numel - 1)


def pruned_count(numel: int, sparsity: float, dtype: torch.dtype = torch.float32) -> int:
    """How many entries the reference prunes: floor(q * (n - 1)) + 1 for s > 0, 0 for s = 0 (without ties;
    in the rare case where the interpolated threshold rounds up to the next value, one more)."""
    if sparsity <= 0.0:
        return 0
    return min(numel, math.floor(_quantile_rank(numel, sparsity, dtype)) + 1)


def kept_count(numel: int, sparsity: float, dtype: torch.dtype = torch.float32) -> int:
    """How many entries survive: n - floor(q * (n - 1)) - 1 for s > 0 (the reference's count)."""
    return numel - pruned_count(numel, sparsity, dtype)


def threshold(delta: Tensor, sparsity: float) -> Tensor:
    """The magnitude at or below which entries are pruned (-inf when nothing is pruned): the reference's
    `torch.quantile(|delta|, sparsity)`, linearly interpolated between two exact order statistics."""
    if sparsity <= 0.0:
        return torch.tensor(float("-inf"), dtype=delta.dtype, device=delta.device)
    dtype = torch.float64 if delta.dtype == torch.float64 else torch.float32
    rank = _quantile_rank(delta.numel(), sparsity, dtype)
    below = math.floor(rank)
    low = kth_smallest_magnitude(delta, below + 1)
    weight = rank - below
    if weight == 0.0:
        return low
    high = kth_smallest_magnitude(delta, below + 2).to(dtype)
    return torch.lerp(low.to(dtype), high, torch.tensor(weight, dtype=dtype, device=delta.device)).to(
        delta.dtype
    )


def kth_smallest_magnitude(values: Tensor, k: int, chunk_elements: int = CHUNK_ELEMENTS) -> Tensor:
    """The k-th smallest |value| (1-based), equal to `values.abs().flatten().kthvalue(k).values`.

    Non-negative float32 numbers order like their bit patterns read as int32, so a histogram of the high 16
    bits finds the bin holding the k-th value and a histogram of the low 16 bits inside that bin finds its
    exact pattern. Both passes go over `chunk_elements` entries at a time, so the temporaries are chunk-sized
    (kthvalue copies the input and allocates an int64 index per entry). Other dtypes fall back to kthvalue.
    """
    flat = values.detach().reshape(-1)
    if flat.dtype not in _RADIX_DTYPES:
        return flat.abs().kthvalue(k).values
    parts = flat.split(chunk_elements)

    def patterns(part: Tensor) -> Tensor:
        return part.abs().to(torch.float32).view(torch.int32)

    high = torch.zeros(1 << 15, dtype=torch.int64, device=flat.device)
    for part in parts:
        high += torch.bincount(patterns(part) >> 16, minlength=1 << 15)
    cumulative = high.cumsum(0)
    top = int(torch.searchsorted(cumulative, k))
    k -= int(cumulative[top - 1]) if top else 0
    low = torch.zeros(1 << 16, dtype=torch.int64, device=flat.device)
    for part in parts:
        bits = patterns(part)
        low += torch.bincount(bits[(bits >> 16) == top] & 0xFFFF, minlength=1 << 16)
    bottom = int(torch.searchsorted(low.cumsum(0), k))
    pattern = torch.tensor((top << 16) | bottom, dtype=torch.int32, device=values.device)
    return pattern.view(torch.float32).to(values.dtype)


def mask_weight_(magnitude: Tensor, limit: Tensor, mask: MaskMode) -> Tensor:
    """The mask for entries of magnitude `magnitude` (a detached |delta|, overwritten in place).

    `magnitude`: |delta| where |delta| > limit, else 0. `binary`: 1 where |delta| > limit, else 0. Both are
    written in place, without a boolean temporary.
    """
    if mask == "binary":
        return magnitude.gt_(limit)
    return torch.nn.functional.threshold_(magnitude, float(limit), 0.0)


def apply_threshold(delta: Tensor, limit: Tensor, sparsity: float, mask: MaskMode = "magnitude") -> Tensor:
    """Zero entries with |delta| <= limit; `magnitude` also scales kept entries by the detached |delta|."""
    if sparsity <= 0.0:
        return delta
    return delta * mask_weight_(delta.detach().abs(), limit, mask)


def sparsify(delta: Tensor, sparsity: float, mask: MaskMode = "magnitude") -> Tensor:
    """Zero the `sparsity` fraction of entries of `delta` with the smallest magnitude.

    `magnitude` (the reference): kept entries become delta * |delta| (the detached magnitude is the mask).
    `binary` (the paper's description): kept entries stay delta (a 0/1 mask). The mask carries no gradient,
    so pruned entries get zero gradient. `sparsity=0` returns `delta` itself (the plain kernel update).
    """
    if sparsity <= 0.0:
        return delta
    return apply_threshold(delta, threshold(delta, sparsity), sparsity, mask)
