"""Deterministic, seeded index partitions: stratified train/val/test carving and per-class caps."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..errors import DataError


def check_fractions(val_fraction: float, test_fraction: float) -> None:
    """Reject split fractions outside [0, 1) or summing to 1 or more."""
    for key, value in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
        if not 0.0 <= value < 1.0:
            raise DataError(f"data.options.{key} must be in [0, 1), got {value}")
    if val_fraction + test_fraction >= 1.0:
        raise DataError(
            f"data.options.val_fraction + test_fraction must be < 1, got {val_fraction + test_fraction}"
        )


def stratified_split(
    targets: Sequence[int], val_fraction: float, test_fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sorted (train, val, test) index arrays with each class spread over the splits in proportion.

    Split sizes are round(fraction * n) (at least 1 when the fraction is > 0), shared out between classes
    by largest remainder, so the result depends only on the labels, the fractions and the seed.
    """
    check_fractions(val_fraction, test_fraction)
    targets = np.asarray(targets)
    n = len(targets)
    n_val, n_test = _split_size(n, val_fraction), _split_size(n, test_fraction)
    if n_val + n_test >= n:
        raise DataError(
            f"cannot carve {n_val} val + {n_test} test samples out of {n} and keep any for training; "
            "lower data.options.val_fraction / test_fraction or provide the val/test splits"
        )
    counts, groups = _class_groups(targets)
    test_counts = _share_out(n_test, counts)
    val_counts = _share_out(n_val, counts - test_counts)
    rng = np.random.default_rng(seed)
    train, val, test = [], [], []
    for group, k_test, k_val in zip(groups, test_counts, val_counts, strict=True):
        group = rng.permutation(group)
        test.append(group[:k_test])
        val.append(group[k_test : k_test + k_val])
        train.append(group[k_test + k_val :])
    return tuple(np.sort(np.concatenate(part)) for part in (train, val, test))  # type: ignore[return-value]


def random_split(n: int, val_fraction: float, test_fraction: float, seed: int) -> tuple[np.ndarray, ...]:
    """Sorted (train, val, test) index arrays of a seeded random split of range(n)."""
    return stratified_split(np.zeros(n, dtype=np.int64), val_fraction, test_fraction, seed)


def cap_per_class(targets: Sequence[int], limit: int, seed: int) -> np.ndarray:
    """Sorted indices keeping a seeded random choice of at most `limit` samples of each class."""
    rng = np.random.default_rng(seed)
    keep = [rng.permutation(group)[:limit] for group in _class_groups(np.asarray(targets))[1]]
    return np.sort(np.concatenate(keep)) if keep else np.zeros(0, dtype=np.int64)


def _class_groups(targets: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
    """Per-class sample counts and index groups, classes in ascending label order."""
    _, counts = np.unique(targets, return_counts=True)
    return counts, np.split(np.argsort(targets, kind="stable"), np.cumsum(counts)[:-1])


def _split_size(n: int, fraction: float) -> int:
    return 0 if fraction == 0 else max(1, round(n * fraction))


def _share_out(total: int, counts: np.ndarray) -> np.ndarray:
    """Split `total` over classes in proportion to `counts` (largest remainder); never exceeds a count."""
    quota = total * counts / counts.sum()
    shares = np.floor(quota).astype(np.int64)
    leftover = total - int(shares.sum())
    shares[np.argsort(shares - quota, kind="stable")[:leftover]] += 1
    return shares
