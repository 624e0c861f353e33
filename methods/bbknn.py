"""BBKNN (Polanski et al. 2020): batch-balanced kNN graph on the unintegrated PCA (``bbknn``).

Graph output: for each cell, ``neighbors_within_batch`` nearest neighbours in every batch
(so ``neighbors_within_batch x n_batches`` neighbours per cell), turned into UMAP fuzzy
connectivities, then trimmed to the ``trim`` strongest connections per cell (package default
``10 x`` neighbours per cell when ``trim`` is null). Uses ``bbknn.matrix.bbknn`` directly on
``obsm["X_pca"]`` (what ``bbknn.bbknn(adata)`` and scIB's wrapper call underneath), so the
input AnnData is left untouched. Package defaults kept: ``neighbors_within_batch`` 3,
``n_pcs`` 50 (capped to the PCs available), Annoy with 10 trees, Euclidean metric.

scIB used ``neighbors_within_batch=25`` for datasets above 100k cells; set it in the config
grid if wanted (not done automatically here, to keep settings explicit).
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from methods.base import IntegrationResult, ParamError

COMPUTATIONS = ("annoy", "pynndescent", "cKDTree", "faiss")


def check_params(params: dict, batch_sizes: np.ndarray) -> None:
    """Raise ParamError naming the first bad value (sizes checked against the smallest batch)."""
    k = int(params["neighbors_within_batch"])
    if k < 1:
        raise ParamError(f"bbknn: neighbors_within_batch must be >= 1, got {k}")
    if k > batch_sizes.min():
        raise ParamError(f"bbknn: neighbors_within_batch={k} exceeds the smallest batch "
                         f"({int(batch_sizes.min())} cells)")
    if int(params["n_pcs"]) < 2:
        raise ParamError(f"bbknn: n_pcs must be >= 2, got {params['n_pcs']}")
    if params["trim"] is not None and int(params["trim"]) < 0:
        raise ParamError(f"bbknn: trim must be null or >= 0, got {params['trim']}")
    if params["computation"] not in COMPUTATIONS:
        raise ParamError(f"bbknn: computation must be one of {COMPUTATIONS}, got {params['computation']!r}")


def integrate(adata, *, batch_key, label_key, params, seed, device) -> IntegrationResult:
    import bbknn.matrix

    if "X_pca" not in adata.obsm:
        raise ValueError("bbknn: obsm['X_pca'] is missing from the preprocessed data")
    batches = np.asarray(adata.obs[batch_key].values).astype(str)
    _, sizes = np.unique(batches, return_counts=True)
    if sizes.size < 2:
        raise ValueError(f"bbknn: obs['{batch_key}'] has a single batch; nothing to integrate")
    check_params(params, sizes)
    pca = np.asarray(adata.obsm["X_pca"], dtype=np.float32)
    n_pcs = min(int(params["n_pcs"]), pca.shape[1])
    distances, connectivities, info = bbknn.matrix.bbknn(
        pca, batches, neighbors_within_batch=int(params["neighbors_within_batch"]), n_pcs=n_pcs,
        trim=None if params["trim"] is None else int(params["trim"]),
        computation=params["computation"], annoy_n_trees=int(params["annoy_n_trees"]),
        pynndescent_random_state=int(seed), metric=params["metric"])
    return IntegrationResult(
        connectivities=sp.csr_matrix(connectivities, dtype=np.float32),
        distances=sp.csr_matrix(distances, dtype=np.float32),
        extra={"n_neighbors": int(info["n_neighbors"]), "n_pcs": n_pcs, "trim": int(info["bbknn"]["trim"])},
    )
