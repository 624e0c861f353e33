"""Harmony (Korsunsky et al. 2019) via harmonypy on the unintegrated PCA.

harmonypy >= 2 returns ``Z_corr`` as cells x dims already (no transpose needed).
"""

from __future__ import annotations

import numpy as np

from methods.base import IntegrationResult, ParamError


def integrate(adata, *, batch_key, label_key, params, seed, device) -> IntegrationResult:
    import harmonypy

    theta = float(params["theta"])
    if theta < 0:
        raise ParamError(f"harmony: theta must be >= 0, got {theta}")
    n_comps = int(params["n_comps"])
    pcs = np.asarray(adata.obsm["X_pca"][:, :n_comps], dtype=np.float64)
    ho = harmonypy.run_harmony(pcs, adata.obs[[batch_key]], [batch_key], theta=theta,
                               max_iter_harmony=int(params["max_iter"]), random_state=seed,
                               verbose=False)
    z = np.asarray(ho.Z_corr)
    if z.shape[0] != adata.n_obs:  # harmonypy < 2 returned dims x cells
        z = z.T
    return IntegrationResult(embedding=z, extra={"harmony_iterations": int(params["max_iter"])})
