"""Per-tensor parameter normalisation (spec A.5): NiNo sees and predicts parameters in this space.

For each named parameter tensor, mu and sigma are the mean and the (unbiased, torch default) standard
deviation over all of its elements and all c past states jointly; the normalised history is
(x - mu) / (sigma + 1e-6), and predictions map back as x_hat * sigma + mu, with sigma alone, as the official
NiNo does (so an update of `d` in normalised space moves the parameter by exactly `sigma * d`, and the round
trip is exact only up to that 1e-6). The returned `sigma` is the std itself; `normalize_like` applies the
forward map to other values (meta-training targets).
"""

from __future__ import annotations

import torch

from learngene_core.errors import DataError

EPS = 1e-6

__all__ = ["EPS", "denormalize", "normalize_global", "normalize_like", "normalize_per_tensor"]


def _check_states(states: torch.Tensor) -> None:
    if states.ndim != 2 or states.shape[0] == 0 or states.shape[1] == 0:
        raise DataError(f"states must be a non-empty [P, c] tensor, got shape {tuple(states.shape)}")


def _std(x: torch.Tensor) -> torch.Tensor:
    # torch's default (Bessel-corrected) std; a single scalar has no spread
    return x.std() if x.numel() > 1 else x.new_zeros(())


def normalize_per_tensor(
    states: torch.Tensor, sizes: list[int]
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Normalise each parameter tensor's rows of `states` [P, c] with its own mu/sigma (A.5).

    `sizes` are the tensors' element counts in flat order (sum = P). Returns (normed [P, c], mu [P, 1],
    sigma [P, 1], the std without the 1e-6); mu/sigma repeat each tensor's statistic over its rows.
    """
    _check_states(states)
    if sum(sizes) != states.shape[0] or any(s <= 0 for s in sizes):
        raise DataError(f"tensor sizes sum to {sum(sizes)} but states have {states.shape[0]} rows")
    chunks = torch.split(states, list(sizes))
    means = torch.stack([c.mean() for c in chunks])
    stds = torch.stack([_std(c) for c in chunks])
    counts = torch.as_tensor(list(sizes), device=states.device)
    mu = torch.repeat_interleave(means, counts).unsqueeze(1)
    sigma = torch.repeat_interleave(stds, counts).unsqueeze(1)
    return normalize_like(states, mu, sigma), mu, sigma


def normalize_global(states: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One mu/sigma for the whole flat vector: the meta-training quirk of transformer trajectories (A.5)."""
    _check_states(states)
    mean, std = states.mean(), _std(states)
    mu = mean.reshape(1, 1).expand(states.shape[0], 1)
    sigma = std.reshape(1, 1).expand(states.shape[0], 1)
    return normalize_like(states, mu, sigma), mu, sigma


def normalize_like(values: torch.Tensor, mu: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """(values - mu) / (sigma + EPS): the normalisation of `values` ([P, n]) with given statistics."""
    return (values - mu) / (sigma + EPS)


def denormalize(values: torch.Tensor, mu: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """Map normalised `values` ([P] or [P, k]) back to parameter space: values * sigma + mu (no EPS)."""
    if values.ndim == 1:
        return values * sigma[:, 0] + mu[:, 0]
    return values * sigma + mu
