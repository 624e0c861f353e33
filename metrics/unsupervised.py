"""Label-free selection metric: per-batch cluster conservation (scCRAFT's tuning heuristic).

He et al., "scCRAFT ...", Commun Biol 2025, Methods "Hyperparameter setting": without cell-type
annotation, "we utilize low-resolution clusters within each batch as pseudo true labels for
post-integration evaluation. Post-integration, we calculate NMI and ARI for each batch using
these labels, and then average them across all batches" (tracked the real NMI/ARI trends over
the lambda_D / lambda_T grid, their Fig. S20b, c).

The paper gives no code for it; choices made here (all arguments):
  * per-batch pseudo-labels: PCA (``n_pcs``) of that batch's pre-integration expression ->
    ``n_neighbors``-NN graph -> Leiden at ``resolution`` (scCRAFT's low resolution, 0.5); they
    depend on the dataset only, so the scorer computes them once per dataset
    (:func:`batch_pseudo_labels_all`) and passes them to every run (``pseudo=``);
  * integrated clusters: one Leiden at the same resolution on the kNN graph of the integrated
    embedding of all cells (or on a given graph, ``graph=``: the scorer passes the shared
    15-NN graph, graph outputs like BBKNN their own), then restricted to each batch's cells;
  * kNN graphs: scanpy's ``pp.neighbors`` graph (UMAP connectivities of the n_neighbors-NN,
    self included), built from ``metrics.neighbors.knn`` + ``cellgraph.umap_connectivities``
    (no numba JIT; equal to scanpy's for exact kNN);
  * Leiden: scanpy's igraph flavour (modularity, run to convergence), seeded;
  * NMI: scikit-learn's arithmetic-mean normalisation (as scib); ARI: scikit-learn;
  * a batch with fewer than 3 cells cannot be clustered and is left out of the average.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

MIN_BATCH_CELLS = 3


def leiden_labels(connectivities, resolution: float, seed: int) -> np.ndarray:
    """Leiden cluster labels (ints) of a symmetric weighted cell graph."""
    import anndata as ad
    import pandas as pd
    import scanpy as sc

    conn = sp.csr_matrix(connectivities)
    holder = ad.AnnData(obs=pd.DataFrame(index=[str(i) for i in range(conn.shape[0])]))
    sc.tl.leiden(holder, resolution=resolution, adjacency=conn, random_state=seed, flavor="igraph",
                 n_iterations=-1, directed=False, key_added="cluster")
    return holder.obs["cluster"].astype(int).to_numpy()


def knn_connectivities(X: np.ndarray, n_neighbors: int, seed: int) -> sp.csr_matrix:
    """scanpy's UMAP-weighted kNN connectivities (``n_neighbors`` incl. the cell) of cells x dims."""
    from cellgraph import umap_connectivities
    from metrics.neighbors import knn

    X = np.ascontiguousarray(X, dtype=np.float32)
    k = max(2, min(n_neighbors, X.shape[0] - 1))
    nbrs = knn(X, k, seed=seed)
    return umap_connectivities(np.asarray(nbrs.indices), np.asarray(nbrs.distances))


def batch_pseudo_labels(X_batch, resolution: float, seed: int, n_neighbors: int, n_pcs: int) -> np.ndarray:
    """Low-resolution Leiden clusters of one batch's cells on the PCA of their expression."""
    import scanpy as sc

    X_batch = X_batch.toarray() if sp.issparse(X_batch) else np.asarray(X_batch)
    X_batch = X_batch.astype(np.float32, copy=False)
    n_comps = min(n_pcs, X_batch.shape[0] - 1, X_batch.shape[1] - 1)
    pcs = sc.pp.pca(X_batch, n_comps=n_comps, random_state=seed) if n_comps >= 2 else X_batch
    return leiden_labels(knn_connectivities(pcs, n_neighbors, seed), resolution, seed)


def batch_pseudo_labels_all(X_pre, batch: np.ndarray, resolution: float = 0.5, seed: int = 0,
                            n_neighbors: int = 15, n_pcs: int = 50) -> dict[str, np.ndarray]:
    """{batch: pseudo-labels of its cells (in cell order)} for every batch with >= 3 cells."""
    batch = np.asarray(batch).astype(str)
    X_rows = sp.csr_matrix(X_pre) if sp.issparse(X_pre) else np.asarray(X_pre)
    out = {}
    for b in np.unique(batch):  # one clustering per batch
        idx = np.flatnonzero(batch == b)
        if idx.size >= MIN_BATCH_CELLS:
            out[str(b)] = batch_pseudo_labels(X_rows[idx], resolution, seed, n_neighbors, n_pcs)
    return out


def _check_inputs(X_pre, emb, graph, batch: np.ndarray) -> None:
    n = batch.shape[0]
    if X_pre.shape[0] != n:
        raise ValueError(f"per_batch_cluster_conservation: X_pre has {X_pre.shape[0]} rows, batch has {n}")
    if (emb is None) == (graph is None):
        raise ValueError("per_batch_cluster_conservation: give exactly one of emb= or graph=")
    if emb is not None:
        emb = np.asarray(emb)
        if emb.ndim != 2 or emb.shape[0] != n:
            raise ValueError(f"per_batch_cluster_conservation: emb has shape {emb.shape}, expected ({n}, d)")
        if not np.isfinite(emb).all():
            raise ValueError("per_batch_cluster_conservation: emb contains NaN or inf")
    if graph is not None and graph.shape != (n, n):
        raise ValueError(f"per_batch_cluster_conservation: graph has shape {graph.shape}, expected ({n}, {n})")
    if np.unique(batch).size < 2:
        raise ValueError("per_batch_cluster_conservation: needs at least 2 batches")


def per_batch_cluster_conservation(X_pre, emb=None, batch=None, resolution: float = 0.5, seed: int = 0,
                                   n_neighbors: int = 15, *, graph=None, n_pcs: int = 50,
                                   pseudo: dict[str, np.ndarray] | None = None) -> dict[str, float]:
    """Mean over batches of NMI / ARI between per-batch pre-integration clusters and integrated clusters.

    X_pre: cells x genes pre-integration expression (log-normalized HVGs; dense or sparse).
    emb: cells x d integrated embedding, or ``graph``: cells x cells integrated connectivities.
    batch: batch label per cell. pseudo: the result of :func:`batch_pseudo_labels_all` for
    these X_pre / batch / resolution / seed (computed here when None). Returns
    {"batch_cluster_nmi": float, "batch_cluster_ari": float} (higher = within-batch structure
    better kept).
    """
    from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

    if batch is None:
        raise ValueError("per_batch_cluster_conservation: batch= is required")
    batch = np.asarray(batch).astype(str)
    _check_inputs(X_pre, emb, graph, batch)
    conn = graph if graph is not None else knn_connectivities(np.asarray(emb), n_neighbors, seed)
    integrated = leiden_labels(conn, resolution, seed)
    if pseudo is None:
        pseudo = batch_pseudo_labels_all(X_pre, batch, resolution, seed, n_neighbors, n_pcs)
    if not pseudo:
        raise ValueError(f"per_batch_cluster_conservation: every batch has fewer than {MIN_BATCH_CELLS} cells")
    nmis, aris = [], []
    for b, labels in pseudo.items():
        mine = integrated[batch == b]
        nmis.append(normalized_mutual_info_score(labels, mine))
        aris.append(adjusted_rand_score(labels, mine))
    return {"batch_cluster_nmi": float(np.mean(nmis)), "batch_cluster_ari": float(np.mean(aris))}
