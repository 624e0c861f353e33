"""Scanorama (Hie, Bryson, Berger 2019) via the ``scanorama`` package on the log-normalized HVGs.

Called the way scIB calls it (``scanorama.correct_scanpy(..., return_dimred=True)``): one
dataset per batch, Scanorama's own L2 cell normalization and randomized SVD (``dimred``
components), mutual-nearest-neighbour panorama stitching. Package defaults are kept
(``knn`` 20, ``sigma`` 15, ``alpha`` 0.1, ``approx`` True (Annoy), ``batch_size`` 5000,
``dimred`` 100).

Outputs (``params["output"]``):
- ``embedding`` (default): the stitched low-dimensional embedding (``scanorama.integrate``).
- ``corrected``: corrected expression (``scanorama.correct``) and the embedding beside it.
  Scanorama's corrected values are on its L2-normalized per-cell scale, not on log1p scale.

Differences from calling the package naively (both are bugs of the naive call, not options):
- Scanorama returns cells grouped by batch (in batch order), so results are mapped back to
  the input cell order here; scIB's wrapper once forgot this (theislab/scib#292).
- Scanorama sorts genes alphabetically in its corrected matrix; columns are mapped back to
  ``var_names`` order.
"""

from __future__ import annotations

import contextlib
import sys

import numpy as np
import scipy.sparse as sp

from methods.base import IntegrationResult, ParamError

OUTPUTS = ("embedding", "corrected")


def batch_order(batches) -> tuple[list[np.ndarray], np.ndarray]:
    """Row indices of each batch (batches in sorted name order) and their concatenation.

    The concatenation is the row order of Scanorama's output; ``inverse_permutation`` of it
    maps Scanorama's rows back to the input order.
    """
    codes, _ = _codes(batches)
    groups = [np.flatnonzero(codes == b) for b in range(codes.max() + 1)]
    return groups, np.concatenate(groups)


def _codes(batches) -> tuple[np.ndarray, np.ndarray]:
    values = np.asarray(batches).astype(str)
    uniq, codes = np.unique(values, return_inverse=True)
    return codes, uniq


def inverse_permutation(order: np.ndarray) -> np.ndarray:
    """``inv`` with ``stacked[inv]`` = rows back in input order when ``stacked = x[order]``."""
    inv = np.empty_like(order)
    inv[order] = np.arange(order.size)
    return inv


def check_params(params: dict) -> None:
    """Raise ParamError naming the first bad value."""
    if params["output"] not in OUTPUTS:
        raise ParamError(f"scanorama: output must be one of {OUTPUTS}, got {params['output']!r}")
    for key in ("dimred", "knn", "batch_size"):
        if int(params[key]) < 1:
            raise ParamError(f"scanorama: {key} must be >= 1, got {params[key]}")
    if float(params["sigma"]) <= 0:
        raise ParamError(f"scanorama: sigma must be > 0, got {params['sigma']}")
    if not 0 <= float(params["alpha"]) <= 1:
        raise ParamError(f"scanorama: alpha must be in [0, 1], got {params['alpha']}")


def integrate(adata, *, batch_key, label_key, params, seed, device) -> IntegrationResult:
    import scanorama

    check_params(params)
    if not adata.var_names.is_unique:
        raise ValueError("scanorama: var_names must be unique (Scanorama drops duplicated genes)")
    groups, order = batch_order(adata.obs[batch_key].values)
    if len(groups) < 2:
        raise ValueError(f"scanorama: obs['{batch_key}'] has a single batch; nothing to integrate")
    X = sp.csr_matrix(adata.X, dtype=np.float64) if sp.issparse(adata.X) else np.asarray(adata.X, np.float64)
    datasets = [sp.csr_matrix(X[idx]) for idx in groups]
    genes = [list(adata.var_names)] * len(groups)
    common = dict(dimred=int(params["dimred"]), knn=int(params["knn"]), sigma=float(params["sigma"]),
                  alpha=float(params["alpha"]), approx=bool(params["approx"]),
                  batch_size=int(params["batch_size"]), seed=int(seed), verbose=0)
    inv = inverse_permutation(order)
    # Scanorama prints progress to stdout; keep stdout for the pipeline's own messages.
    with contextlib.redirect_stdout(sys.stderr):
        if params["output"] == "embedding":
            dimred, _genes = scanorama.integrate(datasets, genes, **common)
            corrected = None
        else:
            dimred, corrected_list, sorted_genes = scanorama.correct(
                datasets, genes, return_dimred=True, return_dense=False, **common)
            corrected = sp.vstack(corrected_list).tocsr()[inv]
            position = {g: i for i, g in enumerate(sorted_genes)}
            corrected = corrected[:, [position[g] for g in adata.var_names]].astype(np.float32)
    embedding = np.vstack(dimred)[inv].astype(np.float32)
    return IntegrationResult(embedding=embedding, corrected=corrected,
                             extra={"n_dims": int(embedding.shape[1]), "output": params["output"]})
