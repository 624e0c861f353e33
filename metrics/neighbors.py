"""One kNN graph per embedding, computed once and shared by every metric.

scib-metrics' Benchmarker computes one k=90 graph and subsets it to 15 (Leiden, graph
connectivity) and 50 (kBET) neighbours; we do the same with
``scib_metrics.nearest_neighbors.NeighborsResults``. Exact search uses scikit-learn (brute
force, blocked by its ``working_memory``) for small data, pynndescent (approximate, as
scib-metrics uses) for large data: pynndescent pays ~14 s of numba JIT per process, which
only pays off above ``exact_max_cells`` (measured in ``benchmarks/bench_metrics.py``).

Graph-only outputs (BBKNN) have no embedding: ``GraphNeighbors`` keeps the method's own
connectivities/distances for the graph metrics (Leiden, graph connectivity, kBET, the latter
after scib's diffusion densification) and lists each cell's k nearest cells by shortest path
on the graph for LISI, as scib's graph LISI does (``metrics/graph_output.py``).
"""

from __future__ import annotations

from functools import cached_property

import numpy as np
import scipy.sparse as sp
from scib_metrics.nearest_neighbors import NeighborsResults

from cellgraph import umap_connectivities

EXACT_MAX_CELLS_DEFAULT = 100_000


class FastNeighborsResults(NeighborsResults):
    """scib-metrics' NeighborsResults with the numpy UMAP connectivities (no numba JIT)."""

    @cached_property
    def knn_graph_connectivities(self):  # noqa: D102 - see umap_connectivities
        return umap_connectivities(np.asarray(self.indices), np.asarray(self.distances))


def exact_knn(X: np.ndarray, k: int, n_jobs: int = 1) -> NeighborsResults:
    """Exact Euclidean k nearest neighbours (self first) with scikit-learn brute force."""
    from sklearn.neighbors import NearestNeighbors

    X = np.ascontiguousarray(X, dtype=np.float32)
    k = min(k, X.shape[0])
    nn = NearestNeighbors(n_neighbors=k, algorithm="brute", n_jobs=n_jobs).fit(X)
    dist, idx = nn.kneighbors(X)
    return _self_first(FastNeighborsResults(indices=idx.astype(np.int64), distances=dist.astype(np.float32)))


def approx_knn(X: np.ndarray, k: int, seed: int = 0, n_jobs: int = 1) -> NeighborsResults:
    """Approximate kNN with pynndescent through scib-metrics (what its Benchmarker uses)."""
    from scib_metrics.nearest_neighbors import pynndescent

    X = np.ascontiguousarray(X, dtype=np.float32)
    res = pynndescent(X, n_neighbors=min(k, X.shape[0]), random_state=seed, n_jobs=n_jobs)
    release_freed_heap()
    return _self_first(FastNeighborsResults(indices=np.asarray(res.indices), distances=np.asarray(res.distances)))


def release_freed_heap() -> None:
    """Give freed heap memory back to the OS (glibc ``malloc_trim``; a no-op elsewhere).

    pynndescent's numba code frees its working set into glibc's heap, which keeps it: measured
    here, 200k cells leave the process at 3.15 GB after the search, 0.84 GB after the trim. Kept,
    that memory sits under every later step and under the Leiden worker processes.
    """
    import ctypes
    import ctypes.util

    try:
        ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def _self_first(res: NeighborsResults) -> NeighborsResults:
    """Put each cell itself in column 0 (duplicate points can tie with it in exact search)."""
    idx, dist = res.indices, res.distances
    n = idx.shape[0]
    rows = np.arange(n)
    if np.array_equal(idx[:, 0], rows):
        return res
    idx, dist = idx.copy(), dist.copy()
    for i in np.flatnonzero(idx[:, 0] != rows):
        where = np.flatnonzero(idx[i] == i)
        j = where[0] if where.size else idx.shape[1] - 1  # self missing (approximate): drop the last
        idx[i, 1:j + 1] = idx[i, 0:j].copy()
        dist[i, 1:j + 1] = dist[i, 0:j].copy()
        idx[i, 0], dist[i, 0] = i, 0.0
    return FastNeighborsResults(indices=idx, distances=dist)


def knn(X: np.ndarray, k: int, method: str = "auto", exact_max_cells: int = EXACT_MAX_CELLS_DEFAULT,
        seed: int = 0, n_jobs: int = 1) -> NeighborsResults:
    """kNN of ``X`` by ``method`` (``auto``: exact up to ``exact_max_cells``, else pynndescent)."""
    if method not in ("auto", "exact", "pynndescent"):
        raise ValueError(f"knn_method must be auto, exact or pynndescent, got {method!r}")
    if method == "exact" or (method == "auto" and X.shape[0] <= exact_max_cells):
        return exact_knn(X, k, n_jobs=n_jobs)
    return approx_knn(X, k, seed=seed, n_jobs=n_jobs)


class GraphNeighbors(NeighborsResults):
    """Neighbours of a graph-only output: shortest-path lists for LISI, the method's graph for the rest.

    ``indices`` / ``distances``: each cell's k nearest other cells by shortest path (-1 / inf
    where fewer are reachable). ``knn_graph_connectivities`` / ``knn_graph_distances`` return
    the method's matrices, so Leiden, graph connectivity and kBET run on the method's graph.
    """

    def __init__(self, indices, distances, connectivities, graph_distances):
        super().__init__(indices=indices, distances=distances)
        self._conn = sp.csr_matrix(connectivities)
        self._dist = sp.csr_matrix(graph_distances) if graph_distances is not None else self._conn

    @cached_property
    def knn_graph_connectivities(self):  # noqa: D102 - see class docstring
        return self._conn

    @cached_property
    def knn_graph_distances(self):  # noqa: D102
        return self._dist

    def subset_neighbors(self, n: int) -> GraphNeighbors:
        """Fewer listed neighbours; the graph itself is the method's and stays as it is."""
        n = min(n, self.n_neighbors)
        return GraphNeighbors(self.indices[:, :n], self.distances[:, :n], self._conn, self._dist)


def graph_neighbors(connectivities, distances, k: int) -> GraphNeighbors:
    """``GraphNeighbors`` of a method's graph: the k nearest cells by shortest path (scib's graph LISI)."""
    from metrics.graph_output import shortest_path_neighbors

    idx, dist = shortest_path_neighbors(connectivities, k)
    return GraphNeighbors(idx, dist, connectivities, distances)
