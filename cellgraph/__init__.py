"""kNN-graph helpers shared by the methods (scCRAFT's clustering), the metrics and the report.

numpy + scipy only (scanpy is imported only by :func:`scanpy_numpy_connectivities`), so every
conda env can import it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from unittest import mock

import numpy as np
import scipy.sparse as sp


def umap_connectivities(indices: np.ndarray, distances: np.ndarray, n_iter: int = 64) -> sp.csr_matrix:
    """UMAP fuzzy-simplicial-set connectivities of a kNN graph (self in column 0), in numpy.

    The same computation as ``umap.umap_.fuzzy_simplicial_set`` with ``local_connectivity=1``
    and ``set_op_mix_ratio=1`` (what scanpy and scib-metrics use): per cell, rho = distance to
    the nearest non-identical neighbour and sigma by binary search so that
    sum_j exp(-(d_j - rho) / sigma) = log2(k); memberships exp(-(d - rho) / sigma), then the
    fuzzy union P + P^T - P * P^T. Written here, vectorized over cells, because UMAP's numba
    version costs ~10-15 s of JIT compilation in every fresh process (a metrics job, a
    scCRAFT run on new data).
    """
    n, k = indices.shape
    d = distances.astype(np.float64)
    target = np.log2(k)
    nonzero = np.where(d > 0, d, np.inf)
    rho = nonzero.min(axis=1)
    rho[~np.isfinite(rho)] = 0.0
    rest = d[:, 1:] - rho[:, None]  # UMAP's search skips column 0 (the cell itself)
    lo, hi, mid = np.zeros(n), np.full(n, np.inf), np.ones(n)
    done = np.zeros(n, dtype=bool)
    for _ in range(n_iter):
        psum = np.where(rest > 0, np.exp(-np.maximum(rest, 0) / mid[:, None]), 1.0).sum(axis=1)
        done |= np.abs(psum - target) < 1e-5
        above = (psum > target) & ~done
        below = ~above & ~done
        hi = np.where(above, mid, hi)
        lo = np.where(below, mid, lo)
        mid = np.where(above, (lo + hi) / 2, mid)
        mid = np.where(below, np.where(np.isinf(hi), mid * 2, (lo + hi) / 2), mid)
        if done.all():
            break
    mean_row = d.mean(axis=1)
    floor = np.where(rho > 0, 1e-3 * mean_row, 1e-3 * d.mean())
    sigma = np.maximum(mid, floor)
    delta = d - rho[:, None]
    vals = np.where(delta <= 0, 1.0, np.exp(-delta / sigma[:, None]))
    vals[indices == np.arange(n)[:, None]] = 0.0
    vals[indices < 0] = 0.0
    P = sp.csr_matrix((vals.ravel(), (np.repeat(np.arange(n), k), np.clip(indices, 0, None).ravel())),
                      shape=(n, n))
    P.eliminate_zeros()
    Pt = P.T.tocsr()
    out = (P + Pt - P.multiply(Pt)).tocsr()
    out.eliminate_zeros()
    return out


@contextlib.contextmanager
def scanpy_numpy_connectivities() -> Iterator[None]:
    """Within the block, ``sc.pp.neighbors`` computes its UMAP connectivities with
    :func:`umap_connectivities` instead of UMAP's numba code (~12 s of JIT per fresh process).

    scanpy's own kNN search still runs; only its internal ``_connectivity.umap`` call is swapped.
    Other set_op_mix_ratio / local_connectivity values than scanpy's defaults (1) go to UMAP's own code.
    """
    from scanpy.neighbors import _connectivity

    numba_umap = _connectivity.umap

    def numpy_umap(knn_indices, knn_dists, *, n_obs, n_neighbors, set_op_mix_ratio=1.0,
                   local_connectivity=1.0):
        if set_op_mix_ratio != 1.0 or local_connectivity != 1.0:
            return numba_umap(knn_indices, knn_dists, n_obs=n_obs, n_neighbors=n_neighbors,
                              set_op_mix_ratio=set_op_mix_ratio, local_connectivity=local_connectivity)
        return umap_connectivities(np.asarray(knn_indices), np.asarray(knn_dists))

    with mock.patch.object(_connectivity, "umap", numpy_umap):
        yield
