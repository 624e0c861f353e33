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


def _edge_arrays(conn) -> tuple[np.ndarray, np.ndarray]:
    """Edges (row, col) and weights of every stored nonzero entry, in row-major order.

    scib-metrics makes a directed igraph graph from the (symmetric) matrix and then
    ``to_undirected(mode="each")``: one undirected edge per nonzero entry, in this order (the
    order decides the seeded Leiden result).
    """
    coo = sp.csr_matrix(conn)
    coo.sort_indices()
    coo = coo.tocoo()
    keep = coo.data != 0
    return np.column_stack([coo.row[keep], coo.col[keep]]).astype(np.int64), coo.data[keep].astype(np.float64)


def _igraph(n: int, edges: np.ndarray):
    """Undirected igraph graph of an (E, 2) edge array (read without building a Python edge list)."""
    import igraph

    return igraph.Graph(n=n, edges=edges, directed=False)


def _leiden_one(graph, weights: np.ndarray, resolution: float, seed: int) -> np.ndarray:
    """Leiden (modularity, igraph) at one resolution, seeded the way scib-metrics seeds it."""
    import igraph

    igraph.set_random_number_generator(random.Random(seed))
    part = graph.community_leiden(objective_function="modularity", weights=weights, resolution=resolution)
    return np.asarray(part.membership, dtype=np.int64)


def _leiden_worker(folder: str, n: int, resolutions: list[float], seed: int) -> list[np.ndarray]:
    """One worker process: builds the graph once from the memory-mapped edge files, then clusters
    at each of its resolutions."""
    edges = np.load(f"{folder}/edges.npy", mmap_mode="r")
    weights = np.load(f"{folder}/weights.npy", mmap_mode="r")
    graph = _igraph(n, edges)
    return [_leiden_one(graph, weights, r, seed) for r in resolutions]


def leiden_clusterings(conn, resolutions=LEIDEN_RESOLUTIONS, seed: int = LEIDEN_SEED,
                       n_jobs: int = 1) -> dict[float, np.ndarray]:
    """Leiden cluster labels per resolution on one connectivity graph.

    With ``n_jobs`` > 1 the resolutions are split over that many processes (igraph holds the
    GIL, so threads would not run in parallel). Each process reads the edges from one
    memory-mapped file and builds its graph once: sending the igraph object to the workers
    pickled it once per resolution as a Python edge list (at 1M cells that was minutes of
    serial pickling and ~4 GB per worker). Same labels as one process: each resolution's RNG is
    reseeded.
    """
    resolutions = [float(r) for r in resolutions]
    edges, weights = _edge_arrays(conn)
    n = conn.shape[0]
    if n_jobs <= 1 or len(resolutions) <= 1:
        graph = _igraph(n, edges)
        return {r: _leiden_one(graph, weights, r, seed) for r in resolutions}
    import tempfile

    from joblib import Parallel, delayed

    n_jobs = min(n_jobs, len(resolutions))
    chunks = [resolutions[i::n_jobs] for i in range(n_jobs)]
    with tempfile.TemporaryDirectory(prefix="leiden_") as folder:
        np.save(f"{folder}/edges.npy", edges)
        np.save(f"{folder}/weights.npy", weights)
        del edges, weights
        out = Parallel(n_jobs=n_jobs)(delayed(_leiden_worker)(folder, n, c, seed) for c in chunks)
    by_res = {r: labels for chunk, res in zip(chunks, out) for r, labels in zip(chunk, res)}
    return {r: by_res[r] for r in resolutions}  # in resolution order: ties in NMI go to the first


def label_codes(labels: np.ndarray) -> np.ndarray:
    """Integer codes of a label vector (scores on codes equal scores on the strings, and are fast)."""
    return pd.factorize(np.asarray(labels))[0]


def nmi_ari_per_resolution(clusterings: dict[float, np.ndarray], labels: np.ndarray) -> dict[float, tuple[float, float]]:
    """(NMI, ARI) of the labels against each clustering (arithmetic NMI, as scib-metrics)."""
    from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

    codes = label_codes(labels)
    return {r: (float(normalized_mutual_info_score(codes, c, average_method="arithmetic")),
                float(adjusted_rand_score(codes, c))) for r, c in clusterings.items()}


def nmi_ari_optimized(clusterings: dict[float, np.ndarray], labels: np.ndarray,
                      scores: dict[float, tuple[float, float]] | None = None) -> dict[str, float]:
    """scib-metrics' Leiden NMI/ARI: the resolution with the best NMI, and ARI at that resolution.

    ``scores``: :func:`nmi_ari_per_resolution` of these clusterings, when already computed.
    """
    scores = scores or nmi_ari_per_resolution(clusterings, labels)
    best = max(clusterings, key=lambda r: scores[r][0])  # first of equal NMIs, as np.argmax
    return {"nmi": scores[best][0], "ari": scores[best][1]}


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
