"""The scIB metric set, computed with scib-metrics' own functions, sharing work between metrics.

What is shared (scib-metrics' Benchmarker recomputes each of these per metric):
- one kNN graph (k=90) per embedding, subset to 15 (Leiden, graph connectivity) and 50 (kBET)
  as the Benchmarker does (``metrics/neighbors.py``);
- the Leiden clusterings: one igraph graph is built once and clustered once per resolution of
  scib-metrics' grid (0.2, 0.4, ..., 2.0, its seed 42); NMI/ARI (optimized resolution),
  NMI-fixed and Jaccard (r=2), 1-ARI(batch) and isolated-label F1 all reuse these labels;
- the label silhouette: ``isolated_labels`` in scib-metrics recomputes exactly the
  ``silhouette_samples(X, labels)`` that ``silhouette_label`` averages; we compute it once.

Difference (option): above ``asw_max_cells`` cells the silhouettes (quadratic in cells by
definition) are computed on a seeded subsample stratified by label x batch; default 50000 cells
(exact below that, as scib-metrics; None = always exact).

Where scib-metrics and scib 1.x disagree, the isolated labels and graph connectivity follow scib
by default, scib-metrics as an option (``isolated_labels_list``, ``graph_connectivity``;
reasons in ``metrics/catalog.py``).
"""

from __future__ import annotations

import random

import numpy as np
import pandas as pd
import scipy.sparse as sp

LEIDEN_RESOLUTIONS = tuple(2 * x / 10 for x in range(1, 11))  # scib-metrics' grid
LEIDEN_SEED = 42  # scib-metrics' default


def _igraph_from_connectivities(conn):
    """Undirected weighted igraph with one edge per stored entry, as scib-metrics builds it.

    scib-metrics makes a directed graph from the (symmetric) matrix and then
    ``to_undirected(mode="each")``: one undirected edge per nonzero entry, in row-major order.
    Building it once here (instead of once per resolution) is the saving.
    """
    import igraph

    coo = sp.csr_matrix(conn)
    coo.sort_indices()
    coo = coo.tocoo()
    keep = coo.data != 0
    g = igraph.Graph(n=conn.shape[0], edges=np.column_stack([coo.row[keep], coo.col[keep]]).tolist(),
                     directed=False)
    g.es["weight"] = coo.data[keep].astype(float).tolist()
    return g


def _leiden_one(graph, resolution: float, seed: int) -> np.ndarray:
    """Leiden (modularity, igraph) at one resolution, seeded the way scib-metrics seeds it."""
    import igraph

    igraph.set_random_number_generator(random.Random(seed))
    part = graph.community_leiden(objective_function="modularity", weights="weight", resolution=resolution)
    return np.asarray(part.membership)


def leiden_clusterings(conn, resolutions=LEIDEN_RESOLUTIONS, seed: int = LEIDEN_SEED,
                       n_jobs: int = 1) -> dict[float, np.ndarray]:
    """Leiden cluster labels per resolution on one connectivity graph (built once)."""
    graph = _igraph_from_connectivities(conn)
    resolutions = [float(r) for r in resolutions]
    if n_jobs > 1 and len(resolutions) > 1:
        from joblib import Parallel, delayed

        out = Parallel(n_jobs=n_jobs)(delayed(_leiden_one)(graph, r, seed) for r in resolutions)
    else:
        out = [_leiden_one(graph, r, seed) for r in resolutions]
    return dict(zip(resolutions, out))


def nmi_ari_optimized(clusterings: dict[float, np.ndarray], labels: np.ndarray) -> dict[str, float]:
    """scib-metrics' Leiden NMI/ARI: the resolution with the best NMI, and ARI at that resolution."""
    from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

    scores = [(normalized_mutual_info_score(labels, c, average_method="arithmetic"),
               adjusted_rand_score(labels, c)) for c in clusterings.values()]
    best = int(np.argmax([s[0] for s in scores]))
    return {"nmi": float(scores[best][0]), "ari": float(scores[best][1])}


def label_silhouette(X: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Per-cell silhouette of labels (scib-metrics ``silhouette_samples``), not rescaled."""
    from scib_metrics.utils import silhouette_samples

    return np.asarray(silhouette_samples(np.asarray(X, dtype=np.float32), np.asarray(labels)))


def asw_label_from_silhouette(sil: np.ndarray) -> float:
    """Cell-type ASW rescaled to [0, 1] (scib-metrics ``silhouette_label``)."""
    return float((np.mean(sil) + 1) / 2)


ISOLATED_LABEL_REFERENCES = ("scib", "scib_metrics")


def isolated_labels_list(labels: np.ndarray, batch: np.ndarray, iso_threshold: int | None = None,
                         reference: str = "scib") -> list[str]:
    """Labels present in the fewest batches (at most ``iso_threshold`` batches when given), sorted.

    ``reference="scib"`` (scib >= 1.1.6, ``scib/metrics/isolated_labels.py::get_isolated_labels``):
    when that number of batches is every batch (every label is in every batch), no label is
    isolated. ``"scib_metrics"`` (scib-metrics 0.5.10 ``_get_isolated_labels``, and scib before
    1.1.6): every label is then isolated, so the isolated-label scores become per-label means of
    the label ASW / F1.
    """
    if reference not in ISOLATED_LABEL_REFERENCES:
        raise ValueError(f"isolated-label reference must be one of {ISOLATED_LABEL_REFERENCES}, got {reference!r}")
    pairs = pd.DataFrame({"label": np.asarray(labels), "batch": np.asarray(batch)}).drop_duplicates()
    batches_per_label = pairs.groupby("label")["batch"].count()
    threshold = int(batches_per_label.min()) if iso_threshold is None else int(iso_threshold)
    if reference == "scib" and threshold == pairs["batch"].nunique():
        return []
    return [str(lab) for lab in batches_per_label.index[batches_per_label <= threshold]]


def isolated_label_asw_from_silhouette(sil: np.ndarray, labels: np.ndarray, isolated: list) -> float:
    """scib-metrics ``isolated_labels``: mean rescaled silhouette of each isolated label, averaged."""
    if not isolated:
        return float("nan")
    sil01 = (sil + 1) / 2
    return float(np.mean([np.mean(sil01[labels == lab]) for lab in isolated]))


def stratified_subsample(labels: np.ndarray, batch: np.ndarray, max_cells: int, seed: int) -> np.ndarray:
    """Sorted indices of about ``max_cells`` cells, proportional per label x batch, at least 2 per group."""
    n = labels.shape[0]
    if max_cells is None or n <= max_cells:
        return np.arange(n)
    rng = np.random.default_rng(seed)
    groups = pd.Series(np.arange(n)).groupby([pd.Series(labels).values, pd.Series(batch).values])
    frac = max_cells / n
    keep = []
    for _, idx in groups:
        idx = idx.to_numpy()
        m = min(idx.size, max(2, int(round(frac * idx.size))))
        keep.append(rng.choice(idx, m, replace=False))
    return np.sort(np.concatenate(keep))


def lisi_per_cell(nbrs, values: np.ndarray) -> np.ndarray:
    """Per-cell LISI of ``values``, perplexity k/3: scib-metrics ``lisi_knn`` on the k=90 graph of an
    embedding, scib's graph LISI (shortest paths) on a graph-only output's own graph."""
    from scib_metrics import lisi_knn

    from metrics.neighbors import GraphNeighbors

    if isinstance(nbrs, GraphNeighbors):
        from metrics.graph_output import graph_lisi_per_cell

        return graph_lisi_per_cell(nbrs.indices, nbrs.distances, values)
    return np.asarray(lisi_knn(nbrs, np.asarray(values)))


def ilisi_from_per_cell(lisi: np.ndarray, n_batches: int) -> float:
    """Scaled graph iLISI: (median - 1) / (B - 1) (scib-metrics ``ilisi_knn``)."""
    return float((np.nanmedian(lisi) - 1) / (n_batches - 1))


def clisi_from_per_cell(lisi: np.ndarray, n_labels: int) -> float:
    """Scaled graph cLISI: (L - median) / (L - 1) (scib-metrics ``clisi_knn``)."""
    return float((n_labels - np.nanmedian(lisi)) / (n_labels - 1))


GRAPH_CONNECTIVITY_REFERENCES = ("scib", "scib_metrics")


def graph_connectivity(graph, labels: np.ndarray) -> float:
    """Mean over labels of the share of the label's cells in the largest connected component of
    the label's subgraph (strong components, as both libraries compute them).

    Which graph decides the value: scib 1.x (``scib/metrics/graph_connectivity.py``) passes the
    symmetric UMAP connectivities of scanpy's 15-NN graph, where strong = weak components;
    scib-metrics' Benchmarker passes the directed 15-NN graph, whose strong components are
    smaller. The scorer picks the graph (option ``graph_connectivity_reference``); written here
    because scib is not a dependency and scib-metrics' function accepts only the directed graph.
    """
    from scipy.sparse.csgraph import connected_components

    graph = sp.csr_matrix(graph)
    labels = np.asarray(labels)
    shares = []
    for lab in np.unique(labels):
        mask = labels == lab
        _, comp = connected_components(graph[mask][:, mask], connection="strong")
        shares.append(np.bincount(comp).max() / mask.sum())
    return float(np.mean(shares))
