"""What the scorer reads: the preprocessed dataset (with what every run of it shares, cached) and
a run file's output (embedding, corrected matrix or graph) with its record."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np


def _cells_key(cells: np.ndarray) -> str:
    """Cache key of a subset of cells (their positions in the data file)."""
    import hashlib

    return hashlib.sha1(np.ascontiguousarray(cells, dtype=np.int64).tobytes()).hexdigest()


class DataCache:
    """The preprocessed dataset and what every run of it shares (e.g. Moran's I reference)."""

    def __init__(self, path: str | Path, opts: dict[str, Any]):
        self.path = Path(path)
        if not self.path.exists():
            raise FileNotFoundError(f"data file {self.path} does not exist")
        self.opts = opts
        self._adata = None
        self._moransi: dict[str, list] = {}
        self._pseudo: dict[str, dict] = {}

    @property
    def adata(self):
        """The dataset, read on first use: the failed runs of a failed dataset (a record without
        cells, docs/contracts.md) are scored without it."""
        if self._adata is None:
            import anndata as ad

            adata = ad.read_h5ad(self.path)
            for key in (self.opts["batch_key"], self.opts["label_key"]):
                if key not in adata.obs:
                    raise KeyError(f"data file {self.path}: obs has no column {key!r}")
            if "X_pca" not in adata.obsm:
                raise KeyError(f"data file {self.path}: obsm has no 'X_pca' (the unintegrated embedding)")
            k = int(self.opts["n_neighbors"])
            if adata.n_obs <= k:  # the kNN graph would silently hold fewer neighbours than configured
                raise ValueError(f"data file {self.path} has {adata.n_obs} cells, not more than metrics.n_neighbors "
                                 f"({k}): lower metrics.n_neighbors (at least 50) or use a dataset with more cells")
            self._adata = adata
        return self._adata

    def check(self) -> None:
        """Read the dataset now; KeyError/OSError when it cannot be scored against."""
        self.adata  # noqa: B018 - the property reads and checks the file

    def batch_pseudo_labels(self, cells: np.ndarray) -> dict[str, np.ndarray]:
        """Per-batch pre-integration clusters of this subset of cells (label-free metric; cached)."""
        from metrics.unsupervised import batch_pseudo_labels_all

        key = _cells_key(cells)
        if key not in self._pseudo:
            o = self.opts
            self._pseudo[key] = batch_pseudo_labels_all(
                np.asarray(self.adata.obsm["X_pca"][cells], dtype=np.float32),
                self.adata.obs[o["batch_key"]].astype(str).to_numpy()[cells],
                resolution=float(o["unsupervised_resolution"]), seed=int(o["seed"]))
        return self._pseudo[key]

    def moransi_reference(self, cells: np.ndarray):
        """sysVI's pre-integration groups/genes for this subset of cells (cached)."""
        from metrics.moransi import moransi_reference

        key = _cells_key(cells)
        if key not in self._moransi:
            o = self.opts
            sub = self.adata[cells]
            self._moransi[key] = moransi_reference(
                sub.X, sub.obs[o["batch_key"]].values, sub.obs[o["label_key"]].values,
                min_cells=o["moransi_min_cells"], min_frac_expressed=o["moransi_min_frac_expressed"],
                cutoff=o["moransi_cutoff"], max_genes=o["moransi_max_genes"], exclude_pattern=o["moransi_exclude"],
                exact_max_cells=o["moransi_exact_max_cells"], seed=int(o["seed"]))
        return self._moransi[key]


def read_run(path: str | Path):
    """The run AnnData and its record (``uns["run_json"]``); clear errors for bad files."""
    import anndata as ad

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"run file {path} does not exist")
    run = ad.read_h5ad(path)
    raw = run.uns.get("run_json")
    if raw is None:
        raise KeyError(f"run file {path}: uns has no 'run_json' record")
    return run, json.loads(raw)


def run_embedding(run) -> tuple[np.ndarray | None, str]:
    """The run's embedding and its kind: X_emb, else PCA of corrected X, else (None, 'graph')."""
    if "X_emb" in run.obsm:
        return np.asarray(run.obsm["X_emb"], dtype=np.float32), "embedding"
    if run.X is not None and run.n_vars > 0:
        import scanpy as sc

        X = run.X
        n_comps = min(50, run.n_vars - 1, run.n_obs - 1)
        return np.asarray(sc.pp.pca(X, n_comps=n_comps, random_state=0), dtype=np.float32), "corrected"
    if "connectivities" in run.obsp:
        return None, "graph"
    raise ValueError("run file has neither obsm['X_emb'], a corrected X nor obsp['connectivities']")
