"""The SNELL branch: the kernel formula, competition-based sparsification, its gradients, and memory layout."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

from snell.kernels import KERNELS, distance_kernel, linear_kernel
from snell.layers import SnellLinear
from snell.sparsify import kept_count, kth_smallest_magnitude, sparsify


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


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_chunked_radix_selection_equals_kthvalue_with_ties_and_zeros(dtype):
    g = torch.Generator().manual_seed(8)
    continuous = torch.randn(37, 29, generator=g)
    ties = torch.randint(-3, 4, (31, 17), generator=g).float()  # many equal magnitudes and zeros
    for values in (continuous.to(dtype), ties.to(dtype)):
        n = values.numel()
        for k in (1, 2, n // 3, n // 2, n - 1, n):
            expected = values.abs().flatten().kthvalue(k).values
            got = kth_smallest_magnitude(values, k, chunk_elements=97)  # chunks do not divide n
            assert got.dtype == dtype and torch.equal(got, expected), (k, got, expected)


def layer(sparsity=0.0, kernel="distance", blocks=1, d_in=8, d_out=12, checkpointing=True, rank=4, mask="magnitude",
          chunk_elements=1 << 18):  # fmt: skip
    torch.manual_seed(0)
    base = nn.Linear(d_in, d_out)
    return SnellLinear(
        base, rank, sparsity, kernel, mask, blocks, 0.0, 0.0, checkpointing, chunk_elements
    ).eval()


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


@pytest.mark.parametrize(("sparsity", "blocks", "kernel", "chunk"), [
    (0.5, 1, "distance", 1 << 18), (0.3, 3, "distance", 1 << 18), (0.0, 1, "distance", 1 << 18),
    (0.4, 1, "rbf", 1 << 18), (0.5, 1, "distance", 40), (0.3, 3, "distance", 20), (0.4, 1, "rbf", 40),
])  # fmt: skip
def test_recomputed_branch_gives_the_same_gradients_as_plain_autograd(sparsity, blocks, kernel, chunk):
    grads = []
    for checkpointing in (True, False):
        lay = layer(sparsity, kernel, blocks, checkpointing=checkpointing, chunk_elements=chunk).train()
        x = torch.randn(2, 3, 8, generator=torch.Generator().manual_seed(0), requires_grad=True)
        lay(x).pow(2).sum().backward()
        grads.append((lay.snell_in.grad, lay.snell_out.grad, x.grad))
    torch.testing.assert_close(grads[0], grads[1])


@pytest.mark.parametrize(("kernel", "mask", "blocks"), [("distance", "magnitude", 1), ("distance", "binary", 3),
                                                      ("rbf", "magnitude", 3), ("linear", "binary", 1)])  # fmt: skip
def test_row_chunks_that_do_not_divide_the_update_give_the_unchunked_results(kernel, mask, blocks):
    results = []
    for chunk in (
        1 << 18,
        2 * 7,
    ):  # the whole update at once / 2 rows of 7 at a time (13 or 5 rows per block)
        lay = layer(
            0.4, kernel, blocks, d_in=7, d_out=13 if blocks == 1 else 15, mask=mask, chunk_elements=chunk
        )
        lay.train()
        x = torch.randn(2, 3, 7, generator=torch.Generator().manual_seed(1), requires_grad=True)
        out = lay(x)
        out.pow(2).sum().backward()
        with torch.no_grad():
            results.append((out, lay.delta_weight(), lay.snell_in.grad, lay.snell_out.grad, x.grad))
    per_block = (13 if blocks == 1 else 5) * 7
    assert int((results[1][1] == 0).sum()) == blocks * (per_block - kept_count(per_block, 0.4))
    for chunked, whole in zip(results[1], results[0], strict=True):
        torch.testing.assert_close(chunked, whole, rtol=0, atol=1e-6)


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


class _LargestTensor(TorchDispatchMode):
    """The largest floating-point tensor any aten op allocates while active (views excluded; the selection's
    fixed-size integer histograms are not counted)."""

    largest = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if func.is_view:
            return out
        sizes = [t.numel() for t in tree_leaves(out) if isinstance(t, torch.Tensor) and t.is_floating_point()]
        self.largest = max([self.largest, *sizes])
        return out


@pytest.mark.parametrize("kernel", ["distance", "rbf"])
def test_backward_builds_no_full_size_temporary_only_row_chunks(kernel):
    d_in, d_out, chunk = 64, 96, 64 * 10
    lay = layer(sparsity=0.5, kernel=kernel, d_in=d_in, d_out=d_out, chunk_elements=chunk).train()
    x = torch.randn(2, d_in, requires_grad=True)
    out = lay(x)
    with _LargestTensor() as probe:
        out.sum().backward()
    assert probe.largest <= 2 * chunk  # row chunks of 10 x 64 (x 2 heads for rbf), never the 96 x 64 update
    with _LargestTensor() as probe:
        lay(x)
    assert probe.largest == d_in * d_out  # forward: the one buffer the threshold needs


@pytest.mark.parametrize("kernel", sorted(KERNELS))
def test_every_kernel_trains_and_merges_exactly(kernel):
    lay = layer(sparsity=0.3, kernel=kernel, rank=4)
    x = torch.randn(3, 8)
    before = lay(x)
    lay.merge()
    torch.testing.assert_close(lay(x), before, atol=1e-5, rtol=0)
    lay.unmerge()
    torch.testing.assert_close(lay(x), before, atol=1e-5, rtol=0)


@pytest.mark.parametrize("shape", [(48, 37), (64, 32), (96, 64), (33, 77)])
@pytest.mark.parametrize("sparsity", [0.08, 0.1, 0.15, 0.3, 0.37, 0.74, 0.88, 0.9, 0.995])
def test_pruned_count_is_the_reference_quantile_thresholds(shape, sparsity):
    # the reference: zero every |delta| <= torch.quantile(|delta|, s), i.e. floor(s * (n - 1)) + 1 entries
    delta = torch.randn(*shape, generator=torch.Generator().manual_seed(11))
    limit = torch.quantile(delta.abs().flatten(), sparsity)
    reference_kept = int((nn.functional.threshold(delta.abs(), float(limit), 0.0) != 0).sum())
    assert int((sparsify(delta, sparsity, "binary") != 0).sum()) == reference_kept
    assert kept_count(delta.numel(), sparsity) == reference_kept


def test_reference_count_keeps_one_entry_fewer_than_floor_of_s_n_at_some_sparsities():
    assert kept_count(1776, 0.1) == 1776 - (177 + 1)  # floor(0.1 * 1775) + 1 = 178 pruned, not floor(177.6)
    assert kept_count(100, 0.5) == 50  # floor(0.5 * 99) + 1 = 50: the same as floor(s * n) here
    assert kept_count(100, 0.0) == 100


def test_drop_path_drops_the_branch_of_a_sample_never_the_frozen_output():
    torch.manual_seed(0)
    lay = SnellLinear(nn.Linear(8, 6), 4, 0.0, "distance", "magnitude", 1, 0.0, 0.5, True).train()
    with torch.no_grad():
        lay.snell_in.mul_(30)  # a branch clearly larger than rounding
    x = torch.randn(64, 3, 8, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        out, base = lay(x), lay.base_layer(x)
        branch = x @ lay.delta_weight().T
    kept = torch.isclose(out, base + 2 * branch, atol=1e-5).flatten(1).all(1)  # DropPath(0.5) scales by 2
    dropped = torch.isclose(out, base, atol=1e-6).flatten(1).all(1)
    assert bool((kept | dropped).all())  # each sample: base + branch / keep, or exactly the base
    assert 10 < int(dropped.sum()) < 54  # both happen (64 samples, p = 0.5)
