"""Preprocessing of a validated raw dataset into the contract file (docs/contracts.md).

QC (``filter_cells(min_genes)``, ``filter_genes(min_cells)``; defaults 200/3 as the simulation
post-processing), raw counts kept in ``layers["counts"]``, ``normalize_total(1e4)``, ``log1p``,
``n_hvg`` highly variable genes (``flavor="seurat"``, ``batch_key="batch"``, as scDREAMER and
scCRAFT do), ``X`` float32, standard obs ``batch``/``label``/``system``, unintegrated PCA in
``obsm["X_pca"]`` and provenance in ``uns["dataset"]``. :func:`subsample` draws the
batch-stratified subsets of the scaling study.
"""

from __future__ import annotations

import json

import anndata as ad
import numpy as np
import scanpy as sc
import scipy.sparse as sp

from datasets.ingest import DataError, check_batches_after_qc, validate_raw

TARGET_SUM = 1e4
HVG_FLAVOR = "seurat"


def h5ad_safe(value):
    """Provenance values anndata can write: None -> "none", nested dicts/lists converted."""
    if value is None:
        return "none"
    if isinstance(value, dict):
        return {str(k): h5ad_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [h5ad_safe(v) for v in value] if value else []
    return value


def n_pcs_for(n_obs: int, n_vars: int, n_pcs: int) -> int:
    """At most ``n_pcs`` components, fewer when the data is small (arpack needs k < min(shape))."""
    return max(1, min(n_pcs, n_obs - 1, n_vars - 1))


def preprocess(raw: ad.AnnData, *, name: str, batch_key: str, label_key: str | None,
               system_key: str | None = None, counts: str = "X", counts_integer: bool | None = None,
               duplicate_cells: str = "error", n_hvg: int = 2000, min_genes: int = 200,
               min_cells: int = 3, n_pcs: int = 50, seed: int = 0, source: str = "") -> ad.AnnData:
    """Validate ``raw`` (see :func:`datasets.ingest.validate_raw`) and preprocess it.

    Returns the contract AnnData: X = log1p(normalize_total 1e4) of the HVGs (CSR float32),
    ``layers["counts"]`` raw counts of the same genes (CSR float32), obs ``batch``/``label``/
    ``system``, ``obsm["X_pca"]`` (arpack, seeded), ``uns["dataset"]`` provenance.
    """
    if n_hvg < 1 or min_genes < 0 or min_cells < 0 or n_pcs < 1:
        raise ValueError(f"bad preprocessing options n_hvg={n_hvg} min_genes={min_genes} "
                         f"min_cells={min_cells} n_pcs={n_pcs}")
    adata, provenance = validate_raw(raw, dataset=name, batch_key=batch_key, label_key=label_key,
                                     system_key=system_key, counts=counts, counts_integer=counts_integer,
                                     duplicate_cells=duplicate_cells)
    adata.X = adata.X.astype(np.float32)
    batches_before = list(adata.obs["batch"].cat.categories)
    sc.pp.filter_cells(adata, min_genes=min_genes)
    sc.pp.filter_genes(adata, min_cells=min_cells)
    check_batches_after_qc(adata, name, batches_before)
    n_cells_qc, n_genes_qc = adata.n_obs, adata.n_vars

    adata.layers["counts"] = adata.X.copy()
    sc.pp.normalize_total(adata, target_sum=TARGET_SUM)
    sc.pp.log1p(adata)
    n_top = min(n_hvg, adata.n_vars)
    sc.pp.highly_variable_genes(adata, n_top_genes=n_top, flavor=HVG_FLAVOR, batch_key="batch")
    adata = adata[:, adata.var["highly_variable"].to_numpy()].copy()
    adata.X = sp.csr_matrix(adata.X, dtype=np.float32)
    adata.layers["counts"] = sp.csr_matrix(adata.layers["counts"], dtype=np.float32)
    for key in ("batch", "label", "system"):
        adata.obs[key] = adata.obs[key].cat.remove_unused_categories()

    n_comps = n_pcs_for(adata.n_obs, adata.n_vars, n_pcs)
    sc.pp.pca(adata, n_comps=n_comps, svd_solver="arpack", random_state=seed)
    adata.obsm["X_pca"] = np.asarray(adata.obsm["X_pca"], dtype=np.float32)
    adata.uns.pop("log1p", None)  # {"base": None}: nothing worth keeping

    provenance.update({
        "source": source, "n_cells_qc": int(n_cells_qc), "n_genes_qc": int(n_genes_qc),
        "n_hvg": int(adata.n_vars), "hvg_flavor": HVG_FLAVOR, "hvg_batch_key": "batch",
        "target_sum": TARGET_SUM, "min_genes": min_genes, "min_cells": min_cells, "n_pcs": n_comps,
        "seed": seed, "n_batches": int(adata.obs["batch"].nunique()),
        "n_labels": int(adata.obs["label"].nunique()),
    })
    adata.uns["dataset"] = h5ad_safe(provenance)
    adata.uns["dataset_json"] = json.dumps(provenance)
    return adata


def allocate_stratified(sizes: np.ndarray, n: int) -> np.ndarray:
    """Split ``n`` draws over strata of ``sizes`` proportionally (largest remainder).

    Every non-empty stratum gets at least one cell when ``n`` allows it, so no batch vanishes
    from a small subsample; no stratum gets more than its size.
    """
    sizes = np.asarray(sizes, dtype=np.int64)
    exact = n * sizes / sizes.sum()
    alloc = np.floor(exact).astype(np.int64)
    order = np.argsort(-(exact - alloc), kind="stable")
    alloc[order[: n - alloc.sum()]] += 1
    if n >= (sizes > 0).sum():
        for k in np.flatnonzero((alloc == 0) & (sizes > 0)):
            alloc[np.argmax(alloc)] -= 1
            alloc[k] = 1
    return np.minimum(alloc, sizes)


def subsample(adata: ad.AnnData, n: int, seed: int, batch_key: str = "batch") -> ad.AnnData:
    """``n`` cells drawn without replacement, stratified by batch (proportional), original order.

    Used by the scaling study; the rows of every obs/obsm/layers entry follow. Raises
    ``DataError`` when n exceeds the number of cells.
    """
    provenance = adata.uns.get("dataset")
    name = provenance.get("name", "?") if isinstance(provenance, dict) else "?"
    if n < 1 or n > adata.n_obs:
        raise DataError(f"dataset '{name}': cannot subsample {n} cells from {adata.n_obs} (its cells after QC): use "
                        f"scaling sizes from 1 to {adata.n_obs}")
    if batch_key not in adata.obs.columns:
        raise DataError(f"dataset '{name}': obs has no column '{batch_key}' to stratify the subsample by")
    rng = np.random.default_rng(seed)
    batches = adata.obs[batch_key].astype(str).to_numpy()
    names, inverse = np.unique(batches, return_inverse=True)
    alloc = allocate_stratified(np.bincount(inverse, minlength=len(names)), n)
    chosen = [rng.choice(np.flatnonzero(inverse == k), size=alloc[k], replace=False) for k in range(len(names))]
    index = np.sort(np.concatenate(chosen))
    out = adata[index].copy()
    record = {"subsample_n": int(n), "subsample_seed": int(seed), "subsample_from": int(adata.n_obs)}
    if isinstance(out.uns.get("dataset"), dict):
        out.uns["dataset"] = {**out.uns["dataset"], **record}
    if isinstance(out.uns.get("dataset_json"), str):
        out.uns["dataset_json"] = json.dumps({**json.loads(out.uns["dataset_json"]), **record})
    return out
