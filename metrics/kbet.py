"""kBET (Buettner et al. 2019) as scIB / scib-metrics compute it, without JIT warm-up.

Same algorithm as ``scib_metrics.kbet`` and ``scib_metrics.kbet_per_label`` (pinned 0.5.10):
per cell type, the k0-neighbourhoods (k0 = a quarter of the mean batch size, clipped to
[10, 70]) come from a diffusion map of the cell type's subgraph; each neighbourhood's batch
counts are tested against the cell type's batch frequencies with a chi-square test, and the
score is the mean acceptance rate over cell types. Written here because scib-metrics runs
pynndescent (~14 s of numba JIT) and re-traces a JAX function for every cell type's size in
every fresh process; this version is numpy + scipy with an exact kNN on the diffusion map
(identical neighbours up to ties) and costs milliseconds. Agreement with scib-metrics is
tested in tests/test_kbet.py.

Batch codes are renumbered among the cells kept after small components are removed (as
scib-metrics' ``kbet`` does on each subset), so a batch that only lived in removed components
leaves no empty code behind. Diffusion components: min(``diffusion_n_comps``, n - 1) per cell
type (scib-metrics 0.5.10 reassigns its argument in the loop, so a small cell type lowers
the count for every later one; tests/test_scib_parity.py shows the difference). A graph-only
output reaches this function after scib's diffusion densification (``metrics/graph_output.py``).

Difference (option ``max_query_cells``, default 10000): a cell type with more cells than that
tests a seeded random subsample of that many neighbourhoods (the neighbours themselves still
come from all of its cells), as R kBET's ``testSize`` does. The exact all-cells test is a
brute-force kNN over the cell type's diffusion map, quadratic in its size (229 s of the 957 s
of the full metric set at 500k cells); with the cap it is linear. Below the cap every cell is
tested, as in scib-metrics.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import scipy.sparse as sp
from scipy.sparse.csgraph import connected_components
from scipy.stats import chi2


def kbet_acceptance(indices: np.ndarray, batch_codes: np.ndarray, alpha: float = 0.05) -> float:
    """Share of neighbourhoods (rows of ``indices``) whose batch mix passes the chi-square test."""
    batch_codes = np.asarray(batch_codes)
    n_batches = int(batch_codes.max()) + 1
    freq = np.bincount(batch_codes, minlength=n_batches) / batch_codes.size
    neigh = batch_codes[indices]
    n, k = neigh.shape
    observed = np.zeros((n, n_batches))
    np.add.at(observed, (np.repeat(np.arange(n), k), neigh.ravel()), 1)
    expected = freq * k
    stat = (np.square(observed - expected) / expected).sum(axis=1)
    p = chi2.sf(stat, n_batches - 1)
    return float((p >= alpha).mean())


def _diffusion_knn(conn: sp.csr_matrix, k: int, n_comps: int, query: np.ndarray | None = None) -> np.ndarray:
    """k nearest neighbours (self included, as scib-metrics' k+1 query) in a diffusion map, of
    every cell or of the cells ``query``."""
    from scib_metrics.utils._diffusion_nn import _EPS, _compute_eigen, _compute_transitions
    from sklearn.neighbors import NearestNeighbors

    evals, evecs = _compute_eigen(_compute_transitions(conn), n_comps=n_comps)
    evals = evals + _EPS
    scale = np.array([e if e == 1 else e / (1 - e) for e in evals])
    emb = np.ascontiguousarray(evecs * scale, dtype=np.float64)
    k1 = min(k + 1, emb.shape[0])
    nn = NearestNeighbors(n_neighbors=k1, algorithm="brute").fit(emb)
    return nn.kneighbors(emb if query is None else emb[query], return_distance=False)


def kbet_per_label(conn, batch, labels, alpha: float = 0.05, diffusion_n_comps: int = 100,
                   max_query_cells: int | None = 10_000, seed: int = 0) -> float:
    """Mean kBET acceptance over cell types on the connectivity graph ``conn`` (scIB definition)."""
    rng = np.random.default_rng(seed)
    conn = sp.csr_matrix(conn)
    codes = np.asarray(pd.Categorical(batch).codes)
    labels = np.asarray(labels)
    scores = []
    for lab in np.unique(labels):
        mask = labels == lab
        sub = conn[mask][:, mask]
        sub.sort_indices()
        b = codes[mask]
        n = sub.shape[0]
        if n < 10 or np.unique(b).size == 1:
            scores.append(np.nan)  # too small or a single batch: skipped, as scIB does
            continue
        b = np.unique(b, return_inverse=True)[1]
        k0 = int(min(70, max(10, np.floor(np.bincount(b).mean() / 4))))
        n_comp, comp = connected_components(sub, connection="strong")
        keep = np.arange(n)
        if n_comp > 1:
            sizes = np.bincount(comp)
            keep = np.flatnonzero(sizes[comp] >= 3 * k0)
            if keep.size / n < 0.75:
                scores.append(0.0)  # mostly small disconnected pieces: full rejection
                continue
            sub = sub[keep][:, keep]
            sub.sort_indices()
        query = None
        if max_query_cells is not None and keep.size > max_query_cells:
            query = np.sort(rng.choice(keep.size, max_query_cells, replace=False))
        try:
            idx = _diffusion_knn(sub, k0, int(min(diffusion_n_comps, sub.shape[0] - 1)), query)
        except ValueError:
            scores.append(0.0)
            continue
        # batch codes renumbered among the kept cells (as scib-metrics' kbet does): a batch
        # whose cells were all in removed components must not leave an empty code behind
        scores.append(kbet_acceptance(idx, np.unique(b[keep], return_inverse=True)[1], alpha))
    return float(np.nanmean(scores)) if np.isfinite(scores).any() else float("nan")
