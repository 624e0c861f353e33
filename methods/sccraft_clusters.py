"""scCRAFT's dual-resolution clustering, computed once per dataset and cached.

The released code (``multi_resolution_cluster`` in ``ch2343/scCRAFT/scCRAFT/utils.py``)
runs ``sc.tl.pca(n_comps=50)`` on the log-normalized HVGs,
``sc.pp.neighbors`` (15 neighbours) on that PCA, then clusters the same graph twice: resolution
0.5 (``leiden1``, low) and a separate *global* clustering at resolution 7 (``leiden2``, high).
scanpy's default random_state (0) is used every time, so the clustering does not depend on the
run seed and one cached result serves every seed and every setting with the same resolutions.

Options (code default first): ``method`` "leiden" (README / notebooks) or "louvain" (the
function's own default); ``high_scope`` "global" (code) or "within_low" (paper: the
high-resolution clustering is run inside each low-resolution cluster).

Louvain: the ``louvain`` package scanpy's ``tl.louvain`` needs is not a dependency here, so
Louvain uses igraph's ``community_multilevel`` with the same resolution (the same algorithm
and modularity objective) with igraph's RNG seeded.
"""

from __future__ import annotations

import hashlib
import os
import random
import tempfile
from pathlib import Path

import numpy as np
import scipy.sparse as sp

CACHE_SUBDIR = "sccraft_clusters"
CLUSTER_SEED = 0  # scanpy's default random_state, as the released code uses it


def data_fingerprint(X) -> str:
    """sha256 of a dense or sparse matrix's shape, dtype and values (the cache key's data part)."""
    h = hashlib.sha256()
    h.update(repr((X.shape, str(X.dtype), "sparse" if sp.issparse(X) else "dense")).encode())
    if sp.issparse(X):
        X = X.tocsr()
        X.sort_indices()
        for part in (X.indptr, X.indices, X.data):
            h.update(np.ascontiguousarray(part).tobytes())
    else:
        h.update(np.ascontiguousarray(X).tobytes())
    return h.hexdigest()


def _leiden(adjacency: sp.csr_matrix, resolution: float, seed: int) -> np.ndarray:
    """Leiden (leidenalg, scanpy's default flavor at the time of the released code) on a graph."""
    import anndata as ad
    import pandas as pd
    import scanpy as sc

    holder = ad.AnnData(obs=pd.DataFrame(index=[str(i) for i in range(adjacency.shape[0])]))
    sc.tl.leiden(holder, resolution=resolution, adjacency=adjacency, random_state=seed,
                 flavor="leidenalg", key_added="cluster")
    return holder.obs["cluster"].astype(int).to_numpy()


def _louvain(adjacency: sp.csr_matrix, resolution: float, seed: int) -> np.ndarray:
    """Louvain via igraph's multilevel algorithm (weighted, with resolution), seeded."""
    import igraph as ig

    coo = sp.triu(adjacency, k=1).tocoo()
    graph = ig.Graph(n=adjacency.shape[0], edges=list(zip(coo.row.tolist(), coo.col.tolist())))
    ig.set_random_number_generator(random.Random(seed))
    try:
        parts = graph.community_multilevel(weights=coo.data.tolist(), resolution=resolution)
    finally:
        ig.set_random_number_generator(random)
    return np.asarray(parts.membership, dtype=int)


def cluster_graph(adjacency, resolution: float, method: str, seed: int = CLUSTER_SEED) -> np.ndarray:
    """Integer cluster labels of a (symmetric, weighted) cell graph."""
    adjacency = sp.csr_matrix(adjacency)
    if method == "leiden":
        return _leiden(adjacency, resolution, seed)
    if method == "louvain":
        return _louvain(adjacency, resolution, seed)
    raise ValueError(f"scCRAFT: cluster_method must be 'leiden' or 'louvain', got '{method}'")


def _within_clusters(adjacency: sp.csr_matrix, low: np.ndarray, resolution: float, method: str) -> np.ndarray:
    """High-resolution labels obtained by clustering each low-resolution cluster's subgraph."""
    high = np.zeros(low.shape[0], dtype=int)
    offset = 0
    for label in np.unique(low):  # a handful of low-resolution clusters, once per dataset
        members = np.flatnonzero(low == label)
        if members.size < 3:
            sub = np.zeros(members.size, dtype=int)
        else:
            sub = cluster_graph(adjacency[members][:, members], resolution, method)
        high[members] = sub + offset
        offset += int(sub.max()) + 1
    return high


def knn_connectivities(adata, n_neighbors: int) -> sp.csr_matrix:
    """``sc.pp.neighbors(adata, n_neighbors, use_rep="X_pca").obsp["connectivities"]``, without numba.

    scanpy's own kNN search runs (exact below 8192 cells, pynndescent above); only the UMAP
    connectivities (numba, ~12 s of JIT in every fresh process, paid again by every scCRAFT run
    on a new subsample) come from the numpy version in :mod:`cellgraph` (equal to 1e-5).
    """
    import scanpy as sc

    from cellgraph import scanpy_numpy_connectivities

    with scanpy_numpy_connectivities():
        sc.pp.neighbors(adata, n_neighbors=n_neighbors, use_rep="X_pca", random_state=CLUSTER_SEED)
    return adata.obsp["connectivities"].tocsr()


def dual_resolution_clusters(X, low_resolution: float = 0.5, high_resolution: float = 7.0,
                             method: str = "leiden", high_scope: str = "global", n_neighbors: int = 15,
                             n_pcs: int = 50) -> tuple[np.ndarray, np.ndarray]:
    """(low, high) integer labels per cell from PCA -> kNN graph -> clustering at two resolutions."""
    import anndata as ad
    import scanpy as sc

    if high_scope not in ("global", "within_low"):
        raise ValueError(f"scCRAFT: high_res_scope must be 'global' or 'within_low', got '{high_scope}'")
    holder = ad.AnnData(X=X.copy() if not sp.issparse(X) else X.tocsr(copy=True))
    n_comps = max(1, min(n_pcs, holder.n_obs - 1, holder.n_vars - 1))
    sc.tl.pca(holder, n_comps=n_comps, random_state=CLUSTER_SEED)
    adjacency = knn_connectivities(holder, n_neighbors)
    low = cluster_graph(adjacency, low_resolution, method)
    if high_scope == "global":
        high = cluster_graph(adjacency, high_resolution, method)
    else:
        high = _within_clusters(adjacency, low, high_resolution, method)
    return low, high


def cache_key(X, **cluster_params) -> str:
    """Hash of the data and the clustering parameters (file name in the cache folder)."""
    params = repr(sorted(cluster_params.items()))
    return hashlib.sha256((data_fingerprint(X) + params).encode()).hexdigest()[:32]


def _write_atomic_npz(path: Path, **arrays: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=".tmp.npz", dir=path.parent)
    os.close(fd)
    try:
        np.savez(tmp, **arrays)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def cached_dual_resolution_clusters(X, cache_dir: str | os.PathLike | None = None,
                                    **cluster_params) -> tuple[np.ndarray, np.ndarray, bool]:
    """:func:`dual_resolution_clusters` through a file cache; returns (low, high, cache_hit).

    ``cache_dir`` defaults to the env var BENCH_CACHE_DIR; without either nothing is cached.
    A cache file that cannot be read or does not match the data size is recomputed.
    """
    cache_dir = cache_dir if cache_dir is not None else os.environ.get("BENCH_CACHE_DIR") or None
    path = None
    if cache_dir:
        path = Path(cache_dir) / CACHE_SUBDIR / f"{cache_key(X, **cluster_params)}.npz"
        if path.exists():
            try:
                with np.load(path) as cached:
                    low, high = cached["low"], cached["high"]
                if low.shape[0] == X.shape[0] == high.shape[0]:
                    return low, high, True
            except (OSError, ValueError, KeyError):
                pass  # unreadable or foreign file: recompute and overwrite it
    low, high = dual_resolution_clusters(X, **cluster_params)
    if path is not None:
        _write_atomic_npz(path, low=low, high=high)
    return low, high, False
