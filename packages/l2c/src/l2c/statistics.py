"""Per-class feature statistics (one Gaussian, or K-means centroids each with a diagonal variance) and sampling
pseudo-features from them, for classifier alignment without storing any image."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor


@dataclass
class ClassStatistics:
    """Centroid means and diagonal variances of every class: means[c] and variances[c] are (m, D)."""

    means: dict[int, Tensor]
    variances: dict[int, Tensor]

    def merge(self, other: ClassStatistics) -> ClassStatistics:
        return ClassStatistics({**self.means, **other.means}, {**self.variances, **other.variances})

    def to_tensors(self) -> dict[str, Tensor]:
        out = {f"mean.{c}": m for c, m in self.means.items()}
        return out | {f"var.{c}": v for c, v in self.variances.items()}

    @classmethod
    def from_tensors(cls, tensors: dict[str, Tensor]) -> ClassStatistics:
        means = {int(k[5:]): v for k, v in tensors.items() if k.startswith("mean.")}
        variances = {int(k[4:]): v for k, v in tensors.items() if k.startswith("var.")}
        return cls(means, variances)


def class_statistics(features: Tensor, labels: Tensor, centroids: int, seed: int) -> ClassStatistics:
    """Statistics of every label in `labels`: its mean and variance, or with `centroids` > 1 those of the K-means
    clusters of its features (HiDe's multi-centroid option; at most one centroid per two samples)."""
    means, variances = {}, {}
    for label in sorted(set(labels.tolist())):
        x = features[labels == label].double()
        k = min(centroids, max(1, len(x) // 2))
        if k == 1:
            groups = [x]
        else:
            from sklearn.cluster import KMeans  # imported here: scikit-learn is slow to import

            assignment = KMeans(n_clusters=k, n_init=3, random_state=seed).fit_predict(x.numpy())
            groups = [x[torch.from_numpy(assignment == j)] for j in range(k) if np.any(assignment == j)]
        means[label] = torch.stack([g.mean(0) for g in groups]).float()
        variances[label] = torch.stack([g.var(0, unbiased=False) for g in groups]).float()
    return ClassStatistics(means, variances)


def sample_features(
    stats: ClassStatistics, per_centroid: int, floor: float, generator: torch.Generator
) -> tuple[Tensor, Tensor]:
    """Pseudo-features drawn from N(mean, diag(variance + floor)) of every centroid of every class, shuffled."""
    xs, ys = [], []
    for label in sorted(stats.means):
        mean, var = stats.means[label], stats.variances[label]
        noise = torch.randn((len(mean), per_centroid, mean.shape[1]), generator=generator)
        xs.append((mean[:, None] + noise * (var[:, None] + floor).sqrt()).reshape(-1, mean.shape[1]))
        ys.append(torch.full((len(mean) * per_centroid,), label, dtype=torch.long))
    x, y = torch.cat(xs), torch.cat(ys)
    order = torch.randperm(len(y), generator=generator)
    return x[order], y[order]
