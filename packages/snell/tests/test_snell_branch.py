"""The SNELL branch: the kernel formula, competition-based sparsification, its gradients, and memory layout."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from snell.kernels import KERNELS, distance_kernel, linear_kernel
from snell.layers import SnellLinear
from snell.sparsify import kept_count, sparsify


def factors(d_in=6, d_out=5, k=3, heads=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(heads, d_in, k, generator=g), torch.randn(heads, d_out, k, generator=g)


def test_distance_kernel_equals_the_spec_formula_by_hand():
    a, b = factors()
    expected = torch.zeros(5, 6)
    for j in range(5):
        for i in range(6):
            d1 = torch.sqrt(((a[0, i] - b[0, j]) ** 2).sum())
            d2 = torch.sqrt(((a[1, i] - b[1, j]) ** 2).sum())
            expected[j, i] = 0.1 * d1 - 0.1 * d2
    torch.testing.assert_close(distance_kernel(a, b), expected, rtol=1e-5, atol=1e-6)


def test_equal_head_factors_give_a_zero_update_and_swapped_heads_negate_it():
    a, b = factors()
    same_a, same_b = a[:1].repeat(2, 1, 1), b[:1].repeat(2, 1, 1)
    assert distance_kernel(same_a, same_b).abs().max() == 0
    torch.testing.assert_close(distance_kernel(a.flip(0), b.flip(0)), -distance_kernel(a, b))


def test_linear_kernel_reproduces_lora_and_distance_kernel_raises_the_rank():
    a, b = factors(d_in=12, d_out=10, k=2, heads=1)
    torch.testing.assert_close(linear_kernel(a, b), b[0] @ a[0].T)
    assert torch.linalg.matrix_rank(linear_kernel(a, b)) <= 2
    a2, b2 = factors(d_in=12, d_out=10, k=1, heads=2)  # rank r = 2 split in two heads
    assert torch.linalg.matrix_rank(distance_kernel(a2, b2)) == 10  # full rank from the same budget


@pytest.mark.parametrize("sparsity", [0.1, 0.37, 0.5, 0.9, 0.995])
def test_kept_fraction_is_one_minus_sparsity_within_one_entry(sparsity):
    delta = torch.randn(48, 37, generator=torch.Generator().manual_seed(1))
    kept = int((sparsify(delta, sparsity) != 0).sum())
    assert kept == kept_count(delta.numel(), sparsity)
    assert abs(kept - (1 - sparsity) * delta.numel()) <= 1


def test_sparsity_keeps_the_largest_magnitudes():
    delta = torch.randn(20, 20, generator=torch.Generator().manual_seed(2))
    out = sparsify(delta, 0.75, "binary")
    kept, dropped = delta[out != 0].abs(), delta[out == 0].abs()
    assert kept.min() > dropped.max()


def test_magnitude_mask_is_delta_times_abs_delta_and_binary_mask_keeps_values():
    delta = torch.randn(30, 30, generator=torch.Generator().manual_seed(3))
    keep = sparsify(delta, 0.6, "binary") != 0
    torch.testing.assert_close(sparsify(delta, 0.6, "magnitude"), delta * delta.abs() * keep)
    torch.testing.assert_close(sparsify(delta, 0.6, "binary"), delta * keep)
    assert torch.equal(sparsify(delta, 0.0, "magnitude"), delta)  # sparsity 0: the plain kernel update


@pytest.mark.parametrize("mask", ["magnitude", "binary"])
def test_pruned_entries_get_zero_gradient(mask):
    delta = torch.randn(16, 16, generator=torch.Generator().manual_seed(4), requires_grad=True)
    out = sparsify(delta, 0.7, mask)
    (out * torch.randn(16, 16, generator=torch.Generator().manual_seed(5))).sum().backward()
    pruned = out.detach() == 0
    assert delta.grad[pruned].abs().max() == 0
    assert (delta.grad[~pruned] != 0).all()


def test_sparsify_handles_matrices_beyond_torch_quantile_size_limit():
    # 16.8M entries: above the 2**24 input limit torch.quantile has had (kthvalue has none)
    delta = torch.randn(4200, 4000, generator=torch.Generator().manual_seed(6))
    kept = int((sparsify(delta, 0.5, "binary") != 0).sum())
    assert abs(kept - kept_count(delta.numel(), 0.5)) <= 10  # float32 ties at the threshold drop a few


def layer(sparsity=0.0, kernel="distance", blocks=1, d_in=8, d_out=12, checkpointing=True, rank=4):
    torch.manual_seed(0)
    base = nn.Linear(d_in, d_out)
    return SnellLinear(base, rank, sparsity, kernel, "magnitude", blocks, 0.0, 0.0, checkpointing).eval()


def test_layer_output_is_base_plus_kernel_update_at_sparsity_zero():
    lay = layer()
    x = torch.randn(3, 8)
    expected = lay.base_layer(x) + x @ distance_kernel(lay.snell_in[0], lay.snell_out[0]).T
    torch.testing.assert_close(lay(x), expected)


def test_fused_qkv_is_three_independent_kernel_blocks_each_sparsified_alone():
    lay = layer(sparsity=0.5, blocks=3, d_in=8, d_out=24)
    delta = lay.delta_weight()
    for b in range(3):
        block = delta[8 * b : 8 * (b + 1)]
        raw = distance_kernel(lay.snell_in[b], lay.snell_out[b])
        torch.testing.assert_close(block, sparsify(raw, 0.5, "magnitude"))
        assert int((block != 0).sum()) == kept_count(64, 0.5)


@pytest.mark.parametrize(("sparsity", "blocks", "kernel"), [(0.5, 1, "distance"), (0.3, 3, "distance"),
                                                          (0.0, 1, "distance"), (0.4, 1, "rbf")])  # fmt: skip
def test_recomputed_branch_gives_the_same_gradients_as_plain_autograd(sparsity, blocks, kernel):
    grads = []
    for checkpointing in (True, False):
        lay = layer(sparsity=sparsity, blocks=blocks, kernel=kernel, checkpointing=checkpointing).train()
        x = torch.randn(2, 3, 8, generator=torch.Generator().manual_seed(0), requires_grad=True)
        lay(x).pow(2).sum().backward()
        grads.append((lay.snell_in.grad, lay.snell_out.grad, x.grad))
    torch.testing.assert_close(grads[0], grads[1])


def test_full_update_is_not_kept_between_forward_and_backward():
    d_in, d_out = 64, 96
    lay = layer(sparsity=0.5, d_in=d_in, d_out=d_out).train()
    saved = []

    def pack(t):
        saved.append(t.numel())
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = lay(torch.randn(2, d_in))
    assert max(saved) < d_in * d_out  # only the input and the factors are saved
    out.sum().backward()
    assert lay.snell_in.grad is not None


@pytest.mark.parametrize("kernel", sorted(KERNELS))
def test_every_kernel_trains_and_merges_exactly(kernel):
    lay = layer(sparsity=0.3, kernel=kernel, rank=4)
    x = torch.randn(3, 8)
    before = lay(x)
    lay.merge()
    torch.testing.assert_close(lay(x), before, atol=1e-5, rtol=0)
    lay.unmerge()
    torch.testing.assert_close(lay(x), before, atol=1e-5, rtol=0)
