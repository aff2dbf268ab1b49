"""The localised balancing constraint (LBC) of LoRAMoE, per wrapped module.

    Q[m, n] = sum over the tokens of sample m of the router weight of expert n      (importance)
    I[m, n] = 1 + delta if expert n is in the expert group of sample m's task type, else 1 - delta
    L       = Var(Z) / Mean(Z)^2,  Z = I * Q flattened over samples and experts     (squared coeff. of variation)

Var is the unbiased sample variance, as in the reference code (the authors confirmed the squared coefficient
of variation is the intended loss). The model sums L over all wrapped modules and multiplies by blc_weight.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from learngene_core.errors import DataError

EPS = 1e-10


def cv_squared(z: torch.Tensor) -> torch.Tensor:
    """Var(z) / (Mean(z)^2 + 1e-10) over all entries (unbiased variance, float32); 0 for a single entry."""
    z = z.float().flatten()
    if z.numel() <= 1:
        return z.new_zeros(())
    return z.var() / (z.mean() ** 2 + EPS)


def importance(gates: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
    """Q: router weights (batch, ..., N) summed over every non-batch position -> (batch, N), float32.

    With `attention_mask` (batch, seq) only the positions where it is nonzero count (padding masked out).
    """
    gates = gates.float()
    if attention_mask is not None:
        gates = gates * attention_mask.to(gates.dtype).reshape(*attention_mask.shape, 1)
    return gates.reshape(gates.shape[0], -1, gates.shape[-1]).sum(1)


def group_membership(groups: Sequence[Sequence[int]], num_experts: int) -> torch.Tensor:
    """(G, N) bool: expert n belongs to group g."""
    member = torch.zeros(len(groups), num_experts, dtype=torch.bool)
    for g, experts in enumerate(groups):
        member[g, list(experts)] = True
    return member


def coefficients(
    task_types: torch.Tensor,
    groups: Sequence[Sequence[int]],
    task_type_groups: Sequence[int],
    num_experts: int,
    delta: float,
) -> torch.Tensor:
    """I: (batch, N) with 1 + delta where the expert is in the group of the sample's task type, else 1 - delta."""
    task_types = task_types.reshape(-1).long()
    known = len(task_type_groups)
    bad = task_types[(task_types < 0) | (task_types >= known)]
    if bad.numel():
        raise DataError(
            f"task_type {int(bad[0])} has no expert group (known task types: 0..{known - 1}; "
            "see LoraMoEConfig.task_type_groups)"
        )
    member = group_membership(groups, num_experts).to(task_types.device)
    sample_group = torch.as_tensor(list(task_type_groups), device=task_types.device)[task_types]
    own = member[sample_group]  # (batch, N)
    one = torch.ones((), dtype=torch.float32, device=task_types.device)
    return torch.where(own, one + delta, one - delta)


def localized_balancing_loss(
    gates: torch.Tensor,
    task_types: torch.Tensor,
    groups: Sequence[Sequence[int]],
    task_type_groups: Sequence[int],
    delta: float,
    attention_mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """The LBC of one module (not yet multiplied by blc_weight): cv_squared(I * Q)."""
    q = importance(gates, attention_mask)
    coeff = coefficients(task_types.to(q.device), groups, task_type_groups, q.shape[-1], delta)
    if coeff.shape[0] != q.shape[0]:
        raise DataError(f"task_types has {coeff.shape[0]} entries for a batch of {q.shape[0]} samples")
    return cv_squared(coeff * q)
