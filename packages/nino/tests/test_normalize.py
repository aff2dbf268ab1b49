"""Per-tensor normalisation (spec A.5): the exact formula and an exact round trip."""

import pytest
import torch

from learngene_core.errors import DataError
from nino.normalize import EPS, denormalize, normalize_global, normalize_per_tensor

SIZES = [6, 1, 20, 3]


def make_states(c: int = 5) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    scales = torch.repeat_interleave(torch.tensor([0.01, 3.0, 0.5, 100.0]), torch.tensor(SIZES))
    return torch.randn(sum(SIZES), c, generator=g) * scales[:, None] + 2.0


def test_per_tensor_formula_uses_all_elements_and_states_jointly():
    states = make_states()
    normed, mu, sigma = normalize_per_tensor(states, SIZES)
    assert normed.shape == states.shape and mu.shape == sigma.shape == (sum(SIZES), 1)
    start = 0
    for n in SIZES:
        block = states[start : start + n]
        spread = block.std() if block.numel() > 1 else torch.tensor(0.0)  # torch's unbiased std
        expected = (block - block.mean()) / (spread + EPS)
        torch.testing.assert_close(normed[start : start + n], expected, rtol=1e-5, atol=1e-5)
        assert torch.all(mu[start : start + n] == block.mean())
        start += n
    # each tensor is standardised on its own: unit spread over its block, whatever its scale
    first = normed[: SIZES[0]]
    assert abs(first.mean().item()) < 1e-4 and abs(first.std().item() - 1) < 1e-3


def test_round_trip_is_exact_for_histories_and_single_columns():
    states = make_states()
    normed, mu, sigma = normalize_per_tensor(states, SIZES)
    torch.testing.assert_close(denormalize(normed, mu, sigma), states, rtol=1e-6, atol=1e-5)
    torch.testing.assert_close(denormalize(normed[:, -1], mu, sigma), states[:, -1], rtol=1e-6, atol=1e-5)
    # a unit move in normalised space moves each parameter by its tensor's sigma
    moved = denormalize(normed[:, -1] + 1, mu, sigma) - states[:, -1]
    torch.testing.assert_close(moved, sigma[:, 0], rtol=1e-4, atol=1e-4)


def test_constant_tensor_is_zero_not_nan():
    states = torch.ones(4, 5)
    normed, mu, sigma = normalize_per_tensor(states, [4])
    assert torch.all(normed == 0) and torch.all(sigma == EPS)
    assert torch.equal(denormalize(normed, mu, sigma), states)


def test_global_normalisation_uses_one_mean_and_std():
    states = make_states()
    normed, mu, sigma = normalize_global(states)
    torch.testing.assert_close(normed, (states - states.mean()) / (states.std() + EPS))
    assert torch.unique(mu).numel() == 1 and torch.unique(sigma).numel() == 1
    torch.testing.assert_close(denormalize(normed, mu, sigma), states, rtol=1e-6, atol=1e-4)


def test_bad_input_is_a_data_error():
    with pytest.raises(DataError, match="sum to 5"):
        normalize_per_tensor(torch.zeros(6, 5), [2, 3])
    with pytest.raises(DataError, match=r"\[P, c\]"):
        normalize_per_tensor(torch.zeros(6), [6])
