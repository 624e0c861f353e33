"""Moran's I preservation (sysVI, Hrovatin et al. 2025), linear in cells.

Per sample x cell-type group: a 15-NN graph (UMAP connectivities, scanpy's default graph) of
the group's cells, before integration on 15 PCs of its expressed genes, after integration on
the embedding; Moran's I of the group's selected genes on each graph (scanpy's
``sc.metrics.morans_i``); score = mean over groups of mean over genes of I_post / I_pre.

Cost: every group's kNN is exact (brute force, quadratic in the group's size) up to
``exact_max_cells`` cells and pynndescent above (approximate, as the shared kNN graph above
its own cap), so the total is at most cells x ``exact_max_cells``: linear in cells. The gene
values go to Moran's I as a sparse genes x cells matrix when the data are sparse (scanpy
computes the same per-gene vectors from it; no dense genes x cells copy). The per-group PCA
holds the group's expressed genes densely (cells x genes, linear in the group's size).
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import scipy.sparse as sp

DOUBLET_PATTERN = r"doublet|\+"
EXACT_MAX_CELLS_DEFAULT = 20_000


def _group_connectivities(X: np.ndarray, k: int, exact_max_cells: int | None, seed: int):
    """UMAP connectivities of the (k+1)-NN graph, self included (scanpy's n_neighbors=k+1)."""
    from metrics.neighbors import knn

    X = np.ascontiguousarray(X, dtype=np.float32)
    cap = X.shape[0] if exact_max_cells is None else int(exact_max_cells)
    return knn(X, min(k + 1, X.shape[0]), method="auto", exact_max_cells=cap, seed=seed).knn_graph_connectivities.tocsr()


def _genes_by_cells(Xg):
    """Genes x cells values for Moran's I: sparse stays sparse (CSR), dense is transposed."""
    return sp.csr_matrix(Xg.T) if sp.issparse(Xg) else np.asarray(Xg).T


def _morans_i(conn, values) -> np.ndarray:
    """Moran's I per row of ``values`` (genes x cells) on graph ``conn`` (scanpy's implementation)."""
    import scanpy as sc

    return np.asarray(sc.metrics.morans_i(conn, values), dtype=float)


def moransi_reference(X, batch: np.ndarray, labels: np.ndarray, min_cells: int = 500,
                      min_frac_expressed: float = 0.1, n_pcs: int = 15, n_neighbors: int = 15,
                      cutoff: float = 0.2, max_genes: int = 150, exclude_pattern: str = DOUBLET_PATTERN,
                      exact_max_cells: int | None = EXACT_MAX_CELLS_DEFAULT, seed: int = 0) -> list[dict]:
    """Pre-integration side of sysVI's Moran's I: the groups and genes to evaluate.

    Groups = sample x cell type with >= ``min_cells`` cells (labels matching
    ``exclude_pattern``, doublets, left out); per group, genes expressed in >=
    ``min_frac_expressed`` of its cells, 15 PCs and a 15-NN graph; genes with Moran's I >=
    ``cutoff`` are kept (at most ``max_genes``, highest first). sysVI tuned the cutoff per
    dataset "to keep around a dozen to 150 genes per group"; here it is an option.
    Returns [{"cells", "genes", "pre", "approx_knn"}] (computed once per dataset, reused for
    every run); ``approx_knn`` is True for a group above ``exact_max_cells``.
    """
    import scanpy as sc

    X = sp.csr_matrix(X) if sp.issparse(X) else np.asarray(X)
    batch, labels = np.asarray(batch).astype(str), np.asarray(labels).astype(str)
    groups = []
    frame = pd.DataFrame({"b": batch, "l": labels})
    for (_, lab), idx in frame.groupby(["b", "l"], sort=True).indices.items():
        if idx.size < min_cells or re.search(exclude_pattern, lab, flags=re.IGNORECASE):
            continue
        Xg = X[idx]
        frac = np.asarray((Xg > 0).mean(axis=0)).ravel()
        genes = np.flatnonzero(frac >= min_frac_expressed)
        if genes.size < 2:
            continue
        Xgg = Xg[:, genes]
        pcs = sc.pp.pca(Xgg.toarray() if sp.issparse(Xgg) else Xgg,
                        n_comps=min(n_pcs, genes.size - 1, idx.size - 1), random_state=0)
        conn = _group_connectivities(pcs, n_neighbors, exact_max_cells, seed)
        pre = _morans_i(conn, _genes_by_cells(Xgg))
        order = np.argsort(-np.nan_to_num(pre, nan=-np.inf))
        keep = [g for g in order[:max_genes] if np.isfinite(pre[g]) and pre[g] >= cutoff]
        if keep:
            approx = exact_max_cells is not None and idx.size > exact_max_cells
            groups.append({"cells": idx, "genes": genes[keep], "pre": pre[keep], "approx_knn": approx})
    return groups


def moransi_preservation(reference: list[dict], X, emb: np.ndarray, n_neighbors: int = 15,
                         exact_max_cells: int | None = EXACT_MAX_CELLS_DEFAULT, seed: int = 0) -> float:
    """Moran's I preservation (sysVI): mean over groups of mean over genes of I_post / I_pre.

    I_post is Moran's I of the same genes on a 15-NN graph of the integrated embedding
    within the same group of cells.
    """
    if not reference:
        return float("nan")
    per_group = []
    emb = np.asarray(emb)
    for grp in reference:
        conn = _group_connectivities(emb[grp["cells"]], n_neighbors, exact_max_cells, seed)
        post = _morans_i(conn, _genes_by_cells(X[grp["cells"]][:, grp["genes"]]))
        per_group.append(float(np.nanmean(post / grp["pre"])))
    return float(np.mean(per_group))
