"""Unintegrated control: PCA of the log-normalized HVGs (the preprocessed ``X_pca``).

The run record's ``extra.n_comps`` is the number of components used: fewer than ``n_comps``
when the data have fewer than ``n_comps`` + 1 cells or genes.
"""

from __future__ import annotations

import sys

import numpy as np

from methods.base import IntegrationResult, ParamError


def integrate(adata, *, batch_key, label_key, params, seed, device) -> IntegrationResult:
    n_comps = int(params["n_comps"])
    if n_comps < 2:
        raise ParamError(f"unintegrated: n_comps must be >= 2, got {n_comps}")
    if "X_pca" in adata.obsm and adata.obsm["X_pca"].shape[1] >= n_comps:
        emb = np.asarray(adata.obsm["X_pca"][:, :n_comps])
    else:
        import scanpy as sc

        emb = sc.pp.pca(adata.X, n_comps=min(n_comps, min(adata.shape) - 1), random_state=seed)
    if emb.shape[1] < n_comps:  # a PCA has at most min(cells, genes) - 1 components
        print(f"warning: unintegrated: n_comps {n_comps} asked, {emb.shape[1]} used (cells x genes "
              f"{adata.n_obs} x {adata.n_vars})", file=sys.stderr)
    return IntegrationResult(embedding=emb, extra={"n_comps": int(emb.shape[1])})
