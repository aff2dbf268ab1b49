"""Per-tensor normalisation (spec A.5): the exact formula and an exact round trip."""

import math

import pytest
import torch

from learngene_core.errors import DataError
from nino.normalize import EPS, denormalize, normalize_global, normalize_like, normalize_per_tensor

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


def test_round_trip_is_exact_up_to_eps_for_histories_and_single_columns():
    states = make_states()
    normed, mu, sigma = normalize_per_tensor(states, SIZES)
    torch.testing.assert_close(denormalize(normed, mu, sigma), states, rtol=1e-6, atol=1e-5)
    torch.testing.assert_close(denormalize(normed[:, -1], mu, sigma), states[:, -1], rtol=1e-6, atol=1e-5)
    # a unit move in normalised space moves each parameter by exactly its tensor's std
    moved = denormalize(normed[:, -1] + 1, mu, sigma) - denormalize(normed[:, -1], mu, sigma)
    torch.testing.assert_close(moved, sigma[:, 0], rtol=1e-4, atol=1e-6)


def test_unnormalisation_multiplies_by_std_without_eps_hand_computed():
    # one tensor, two states 0 and 2e-6: mean 1e-6, unbiased std sqrt(2)e-6 (comparable to EPS on purpose)
    states = torch.tensor([[0.0, 2e-6]], dtype=torch.float64)
    normed, mu, sigma = normalize_per_tensor(states, [1])
    std = math.sqrt(2) * 1e-6
    assert sigma.item() == pytest.approx(std, rel=1e-12) and mu.item() == pytest.approx(1e-6, rel=1e-12)
    last = 1e-6 / (std + 1e-6)  # the most recent state, normalised with std + eps
    assert normed[0, 1].item() == pytest.approx(last, rel=1e-12)
    # a prediction of last + 1 in normalised space maps back as (last + 1) * std + mean: 3.0e-6 here
    expected = (last + 1) * std + 1e-6
    assert expected == pytest.approx(3.0e-6, rel=1e-12)
    assert denormalize(normed[:, 1] + 1, mu, sigma).item() == pytest.approx(expected, rel=1e-12)
    # multiplying back by std + eps (the old bug) is off by eps x the normalised prediction
    wrong = (last + 1) * (std + 1e-6) + 1e-6
    assert abs(wrong - expected) > 1e-6


def test_normalize_like_applies_the_same_statistics():
    states = make_states()
    normed, mu, sigma = normalize_per_tensor(states, SIZES)
    torch.testing.assert_close(normalize_like(states, mu, sigma), normed)


def test_constant_tensor_is_zero_not_nan():
    states = torch.ones(4, 5)
    normed, mu, sigma = normalize_per_tensor(states, [4])
    assert torch.all(normed == 0) and torch.all(sigma == 0)
    assert torch.equal(denormalize(normed, mu, sigma), states)


def test_global_normalisation_uses_one_mean_and_std():
    states = make_states()
    normed, mu, sigma = normalize_global(states)
    torch.testing.assert_close(normed, (states - states.mean()) / (states.std() + EPS))
    assert torch.unique(mu).numel() == 1 and torch.unique(sigma).numel() == 1
    assert sigma[0, 0].item() == pytest.approx(states.std().item(), rel=1e-6)
    torch.testing.assert_close(denormalize(normed, mu, sigma), states, rtol=1e-6, atol=1e-4)


def test_bad_input_is_a_data_error():
    with pytest.raises(DataError, match="sum to 5"):
        normalize_per_tensor(torch.zeros(6, 5), [2, 3])
    with pytest.raises(DataError, match=r"\[P, c\]"):
        normalize_per_tensor(torch.zeros(6), [6])
