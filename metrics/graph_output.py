"""What scib does to a graph-only output (BBKNN) before its kBET and graph LISI.

A graph method gives each cell a different number of neighbours, so scib 1.x (theislab/scib)
equalizes neighbourhoods before the two metrics that need a fixed count:

- kBET: ``scib/metrics/utils.py::diffusion_conn`` adds diffusion steps to the method's
  connectivities (T / max row sum, then T + T^2 + ...) until every cell of a component with at
  least ``min_k`` (50) cells has ``min_k`` nonzero entries; kBET per label then runs on that
  denser graph (``scib/metrics/kbet.py::kBET``, ``type_="knn"``). Written here in scipy.sparse
  (same arithmetic; scib is not a dependency: its kBET needs R and its LISI a compiled program).
- graph LISI: ``scib/metrics/lisi.py::lisi_graph_py`` with ``scib/knn_graph/knn_graph.cpp``:
  the 90 nearest cells by shortest path on the graph, the edge lengths being the
  connectivities themselves (as the C++ program reads the matrix; values below 3e-308 are
  raised to 3e-308), then the Simpson index at perplexity 90 / 3. A cell with fewer than 90
  reachable cells gets LISI 1 and an isolated cell (no edge) is left out, as in scib. The
  k-limited Dijkstra is written here with numba (a Python loop would take minutes at 100k
  cells; scipy's ``dijkstra`` returns dense rows, quadratic in cells); its cost is
  cells x k x degree x log, linear in cells.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from scipy.sparse.csgraph import connected_components

SCIB_MIN_WEIGHT = 3e-308  # scib/metrics/lisi.py: smaller connectivities are set to this


def diffusion_connectivities(conn, min_k: int = 50, max_iterations: int = 26) -> sp.csr_matrix:
    """scib's ``diffusion_conn``: diffused connectivities with >= ``min_k`` entries per row.

    Rows of components smaller than ``min_k`` cells are not required to reach ``min_k``
    (they cannot). Raises ValueError as scib does when ``max_iterations`` are not enough.
    """
    conn = sp.csr_matrix(conn, dtype=np.float64)
    T = conn * (1 / conn.sum(axis=1).max())  # scib: diags(1 / max row sum) * T
    n_comp, comp = connected_components(conn, connection="strong")
    large = np.ones(conn.shape[0], dtype=bool)
    if n_comp > 1:
        large = np.bincount(comp)[comp] >= min_k
    M, T_agg, step = T.copy(), T, 2

    def fewest(M):
        sub = M[large][:, large]
        return int(np.diff(sub.indptr).min()) if sub.shape[0] else min_k

    while fewest(M) < min_k and step < max_iterations:
        T_agg = T_agg @ T
        M = (M + T_agg).tocsr()
        step += 1
    if fewest(M) < min_k:
        raise ValueError(f"could not create diffusion connectivities with at least {min_k} nonzero entries "
                         f"per cell in {max_iterations} iterations")
    M.setdiag(0)
    M.eliminate_zeros()
    return M


def _dijkstra_knn_numba():
    """The compiled k-limited Dijkstra (numba is imported only when a graph output is scored)."""
    import numba

    @numba.njit(cache=False)
    def run(indptr, indices, weights, k):
        n = indptr.size - 1
        out_idx = np.full((n, k), -1, dtype=np.int64)
        out_dist = np.full((n, k), np.inf, dtype=np.float64)
        best = np.full(n, np.inf)
        done = np.zeros(n, dtype=np.bool_)
        max_deg = 0
        for i in range(n):
            max_deg = max(max_deg, indptr[i + 1] - indptr[i])
        cap = (k + 1) * max_deg + 1
        heap_d = np.empty(cap, dtype=np.float64)
        heap_v = np.empty(cap, dtype=np.int64)
        touched = np.empty(cap, dtype=np.int64)
        for src in range(n):
            size, n_touched, found = 1, 1, 0
            heap_d[0], heap_v[0] = 0.0, src
            best[src] = 0.0
            touched[0] = src
            while size > 0 and found < k:
                d, v = heap_d[0], heap_v[0]
                size -= 1  # pop the root: move the last entry down
                last_d, last_v, pos = heap_d[size], heap_v[size], 0
                while True:
                    child = 2 * pos + 1
                    if child >= size:
                        break
                    if child + 1 < size and heap_d[child + 1] < heap_d[child]:
                        child += 1
                    if heap_d[child] >= last_d:
                        break
                    heap_d[pos], heap_v[pos] = heap_d[child], heap_v[child]
                    pos = child
                heap_d[pos], heap_v[pos] = last_d, last_v
                if done[v] or d > best[v]:
                    continue  # a stale entry
                done[v] = True
                if v != src:
                    out_idx[src, found], out_dist[src, found] = v, d
                    found += 1
                for e in range(indptr[v], indptr[v + 1]):
                    u, nd = indices[e], d + weights[e]
                    if done[u] or nd >= best[u]:
                        continue
                    if best[u] == np.inf:
                        touched[n_touched] = u
                        n_touched += 1
                    best[u] = nd
                    pos = size  # push: sift up
                    size += 1
                    while pos > 0:
                        parent = (pos - 1) // 2
                        if heap_d[parent] <= nd:
                            break
                        heap_d[pos], heap_v[pos] = heap_d[parent], heap_v[parent]
                        pos = parent
                    heap_d[pos], heap_v[pos] = nd, u
            for t in range(n_touched):
                best[touched[t]] = np.inf
                done[touched[t]] = False
        return out_idx, out_dist

    return run


def shortest_path_neighbors(conn, k: int = 90) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` nearest other cells of every cell by shortest path, edge length = connectivity.

    Returns (indices, distances), each cells x k, nearest first; -1 / inf where a cell reaches
    fewer than ``k`` cells.
    """
    g = sp.csr_matrix(conn, dtype=np.float64)
    g.sort_indices()
    weights = np.maximum(g.data, SCIB_MIN_WEIGHT)
    return _dijkstra_knn_numba()(g.indptr.astype(np.int64), g.indices.astype(np.int64), weights, int(k))


def graph_lisi_per_cell(indices: np.ndarray, distances: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Per-cell LISI of ``values`` on shortest-path neighbour lists (scib's graph LISI).

    Perplexity k / 3 (floored); a cell with fewer than k reachable cells scores 1 and a cell
    with none is NaN (scib leaves it out), so that the scaled medians match scib.
    """
    import pandas as pd
    from scib_metrics.utils import compute_simpson_index

    n, k = indices.shape
    codes = np.asarray(pd.Categorical(np.asarray(values)).codes)
    found = (indices >= 0).sum(axis=1)
    rows = np.arange(n)[:, None]
    # incomplete rows are padded with the cell itself, which the Simpson index masks out
    idx = np.where(indices >= 0, indices, rows)
    dist = np.where(np.isfinite(distances), distances, 0.0)
    simpson = np.asarray(compute_simpson_index(knn_dists=dist, knn_idx=idx, row_idx=rows, labels=codes,
                                               n_labels=int(codes.max()) + 1, perplexity=float(np.floor(k / 3))))
    lisi = 1 / simpson
    lisi[found < k] = 1.0
    lisi[found == 0] = np.nan
    return lisi
