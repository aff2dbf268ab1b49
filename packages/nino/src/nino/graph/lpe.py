"""Laplacian eigenvector positional encodings of a neural graph (spec A.4.5).

Same recipe as torch_geometric's `AddLaplacianEigenvectorPE(k, is_undirected=True)`: the graph made undirected
with binary edges (duplicates merged, self-loops dropped, as `get_laplacian` does), the symmetric-normalised
Laplacian L = I - D^-1/2 A D^-1/2, and the eigenvectors of its k smallest non-trivial eigenvalues. Unlike the
transform, signs are made deterministic (each vector's largest-magnitude entry is positive) instead of random;
meta-training applies its own random sign flips. Dense `eigh` up to DENSE_LIMIT nodes (every task graph here);
beyond, ARPACK with a fixed start vector run to machine precision (tol=0, the transform's default): a looser
tolerance returns one vector of a repeated eigenvalue and skips to the next eigenvalue (neural graphs have
many repeated eigenvalues: interchangeable neurons).
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["laplacian_pe"]

DENSE_LIMIT = 2000


def laplacian_pe(edge_index: torch.Tensor, num_nodes: int, k: int = 8) -> torch.Tensor:
    """[num_nodes, k] float32 eigenvectors (columns padded with zeros if the graph is too small)."""
    src, dst = edge_index
    keep = src != dst
    a = torch.cat([src[keep], dst[keep]])
    b = torch.cat([dst[keep], src[keep]])
    key = torch.unique(a * num_nodes + b)
    rows, cols = (key // num_nodes).numpy(), (key % num_nodes).numpy()
    deg = np.bincount(rows, minlength=num_nodes).astype(np.float64)
    inv_sqrt = np.zeros_like(deg)
    inv_sqrt[deg > 0] = deg[deg > 0] ** -0.5
    vals = -inv_sqrt[rows] * inv_sqrt[cols]
    n_vec = min(k + 1, num_nodes)
    if num_nodes <= DENSE_LIMIT:
        lap = np.eye(num_nodes)
        lap[rows, cols] += vals
        eig_vals, eig_vecs = np.linalg.eigh(lap)
    else:
        eig_vals, eig_vecs = sparse_smallest_eigs(rows, cols, vals, num_nodes, n_vec)
    order = np.argsort(eig_vals, kind="stable")[:n_vec]
    vecs = eig_vecs[:, order][:, 1 : k + 1]
    pivot = np.abs(vecs).argmax(axis=0)
    signs = np.sign(vecs[pivot, np.arange(vecs.shape[1])])
    signs[signs == 0] = 1.0
    pe = torch.zeros(num_nodes, k)
    pe[:, : vecs.shape[1]] = torch.from_numpy(vecs * signs).float()
    return pe


def sparse_smallest_eigs(
    rows: np.ndarray, cols: np.ndarray, vals: np.ndarray, num_nodes: int, n_vec: int
) -> tuple[np.ndarray, np.ndarray]:
    """The n_vec smallest eigenpairs of I + sparse(vals at rows, cols), by ARPACK at machine precision."""
    import scipy.sparse as sp
    from scipy.sparse.linalg import eigsh

    lap = sp.eye(num_nodes, format="csr") + sp.csr_matrix((vals, (rows, cols)), shape=(num_nodes, num_nodes))
    v0 = np.linspace(1.0, 2.0, num_nodes)
    return eigsh(lap, k=n_vec, which="SA", v0=v0, tol=0)
