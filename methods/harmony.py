"""Harmony (Korsunsky et al. 2019) via harmonypy on the unintegrated PCA.

harmonypy >= 2 returns ``Z_corr`` as cells x dims already (no transpose needed). The run record's
``extra.n_comps`` is the number of PCs used: at most those of the data's ``X_pca``.
"""

from __future__ import annotations

import sys

import numpy as np

from methods.base import IntegrationResult, ParamError


def integrate(adata, *, batch_key, label_key, params, seed, device) -> IntegrationResult:
    import harmonypy

    theta = float(params["theta"])
    if theta < 0:
        raise ParamError(f"harmony: theta must be >= 0, got {theta}")
    n_comps = int(params["n_comps"])
    pcs = np.asarray(adata.obsm["X_pca"][:, :n_comps], dtype=np.float64)
    if pcs.shape[1] < n_comps:  # the preprocessed PCA holds fewer components (preprocess n_pcs, small data)
        print(f"warning: harmony: n_comps {n_comps} asked, the data's X_pca has {pcs.shape[1]}: "
              f"{pcs.shape[1]} used", file=sys.stderr)
    ho = harmonypy.run_harmony(pcs, adata.obs[[batch_key]], [batch_key], theta=theta,
                               max_iter_harmony=int(params["max_iter"]), random_state=seed,
                               verbose=False)
    z = np.asarray(ho.Z_corr)
    if z.shape[0] != adata.n_obs:  # harmonypy < 2 returned dims x cells
        z = z.T
    return IntegrationResult(embedding=z, extra={"harmony_iterations": int(params["max_iter"]),
                                                 "n_comps": int(pcs.shape[1])})
