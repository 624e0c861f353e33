"""ComBat (Johnson, Li, Rabinovic 2007) via ``scanpy.pp.combat`` on the log-normalized HVGs.

Empirical-Bayes location/scale adjustment per gene and batch, no biological covariates
(as scIB ran it). Returns the corrected expression (-> ``X`` of the run file) and, beside it,
the PCA of the corrected matrix (-> ``obsm["X_emb"]``, ``n_comps`` components, seeded ARPACK
as in ``scanpy.pp.pca``) so that embedding metrics can score it like the other methods.

Option ``covariates`` (list of obs keys, default empty) passes biological covariates to
ComBat; with cell-type labels that leaks the labels into the correction, so it stays off
in the benchmark.
"""

from __future__ import annotations

import numpy as np

from methods.base import IntegrationResult, ParamError


def integrate(adata, *, batch_key, label_key, params, seed, device) -> IntegrationResult:
    import anndata as ad
    import scanpy as sc

    n_comps = int(params["n_comps"])
    if n_comps < 2:
        raise ParamError(f"combat: n_comps must be >= 2, got {n_comps}")
    covariates = list(params["covariates"] or [])
    missing = [c for c in covariates if c not in adata.obs]
    if missing:
        raise ParamError(f"combat: covariates {missing} are not obs columns")
    if adata.obs[batch_key].nunique() < 2:
        raise ValueError(f"combat: obs['{batch_key}'] has a single batch; nothing to integrate")
    # ComBat works on a dense genes x cells copy anyway; a light AnnData avoids copying layers.
    light = ad.AnnData(X=adata.X.copy(), obs=adata.obs[[batch_key, *covariates]].copy())
    corrected = sc.pp.combat(light, key=batch_key, covariates=covariates or None, inplace=False)
    corrected = np.asarray(corrected, dtype=np.float32)
    if not np.isfinite(corrected).all():
        raise ValueError("combat: corrected matrix has NaN/inf (a gene constant within a batch?)")
    n_comps = min(n_comps, min(corrected.shape) - 1)
    embedding = sc.pp.pca(corrected, n_comps=n_comps, random_state=seed)
    return IntegrationResult(embedding=np.asarray(embedding, dtype=np.float32), corrected=corrected,
                             extra={"n_comps": int(n_comps)})
