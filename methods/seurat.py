"""Seurat v4 anchor integration (Stuart et al. 2019), CCA or RPCA, run through ``Rscript``.

Registry names ``seurat_cca`` and ``seurat_rpca`` (param ``reduction``). The log-normalized
HVGs (``X``) go to R as Matrix Market + TSV in a temporary folder; ``seurat_integrate.R``
builds one Seurat object per batch, uses every HVG as an anchor feature,
``FindIntegrationAnchors`` (for RPCA after per-batch ``ScaleData`` + ``RunPCA``, as in
Seurat's RPCA vignette) and ``IntegrateData``, then ``ScaleData`` + ``RunPCA`` (``n_pcs``) of
the integrated assay: that PCA is the embedding returned. Seurat defaults are kept
(``k_filter`` 200, ``k_score`` 30, ``k_weight`` 100, ``dims`` 30) except ``k_anchor``, the
parameter the sysVI paper tuned (grid {2, 5, 10, 20, 50} in its configs; default 5).

Differences from calling Seurat on a raw object (options/notes):
- Seurat normally normalizes and selects 2000 features itself; here the benchmark's
  preprocessing (normalize_total 1e4 + log1p, per-batch seurat-flavor HVGs) is reused so every
  method sees the same genes. The sysVI paper did the same (precomputed HVGs).
- ``IntegrateData`` fails when ``k_weight`` is not smaller than the number of distinct anchor
  cells of every batch, and anchor filtering needs ``k_filter`` below the smallest batch; both
  are lowered just below those limits when needed (R side for k_weight, which needs the
  anchors), and the values used are recorded in ``extra`` (the sysVI authors likewise forced
  k.weight 35-50 for small batches).

Needs ``Rscript`` with Seurat (Debian ``r-cran-seurat``; conda ``r-seurat``); a clear error
says which is missing. R and its packages are found on ``PATH`` or via env ``RSCRIPT``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from methods.base import IntegrationResult, ParamError, killed_by_signal

R_SCRIPT = Path(__file__).with_name("seurat_integrate.R")
REDUCTIONS = ("cca", "rpca")
SEURAT_MISSING_EXIT = 3


def rscript_path() -> str:
    """Path of Rscript (env RSCRIPT or PATH); RuntimeError naming what to install when absent."""
    path = os.environ.get("RSCRIPT") or shutil.which("Rscript")
    if not path or not Path(path).exists():
        raise RuntimeError("seurat: Rscript not found (set RSCRIPT or put R on PATH); install R with "
                           "Seurat v4 (Debian: apt-get install r-cran-seurat; conda: r-seurat)")
    return path


def check_params(params: dict) -> None:
    """Raise ParamError naming the first bad value."""
    if params["reduction"] not in REDUCTIONS:
        raise ParamError(f"seurat: reduction must be one of {REDUCTIONS}, got {params['reduction']!r}")
    for key in ("k_anchor", "k_filter", "k_score", "k_weight", "dims", "n_pcs"):
        if int(params[key]) < 1:
            raise ParamError(f"seurat: {key} must be >= 1, got {params[key]}")
    if int(params["dims"]) > int(params["n_pcs"]) and params["reduction"] == "rpca":
        raise ParamError(f"seurat: dims ({params['dims']}) must be <= n_pcs ({params['n_pcs']})")


def effective_k(params: dict, smallest_batch: int) -> dict[str, int]:
    """k_weight and k_filter lowered below the smallest batch (Seurat fails otherwise).

    seurat_integrate.R lowers k_weight further when a batch has fewer distinct anchor cells.
    """
    cap = max(smallest_batch - 1, 1)
    return {"k_weight": min(int(params["k_weight"]), cap), "k_filter": min(int(params["k_filter"]), cap)}


def write_inputs(folder: Path, adata, batch_key: str) -> None:
    """X.mtx (genes x cells), genes.tsv and cells.tsv for seurat_integrate.R."""
    import pandas as pd
    import scipy.io
    import scipy.sparse as sp

    X = adata.X if sp.issparse(adata.X) else sp.csr_matrix(np.asarray(adata.X))
    scipy.io.mmwrite(str(folder / "X.mtx"), sp.csr_matrix(X, dtype=np.float64).T.tocoo(), precision=7)
    (folder / "genes.tsv").write_text("\n".join(map(str, adata.var_names)) + "\n")
    pd.DataFrame({"cell": adata.obs_names.astype(str), "batch": adata.obs[batch_key].astype(str).values}
                 ).to_csv(folder / "cells.tsv", sep="\t", index=False)


def integrate(adata, *, batch_key, label_key, params, seed, device) -> IntegrationResult:
    import pandas as pd

    check_params(params)
    rscript = rscript_path()
    if not adata.obs_names.is_unique:
        raise ValueError("seurat: obs_names must be unique")
    sizes = adata.obs[batch_key].astype(str).value_counts()
    if sizes.size < 2:
        raise ValueError(f"seurat: obs['{batch_key}'] has a single batch; nothing to integrate")
    ks = effective_k(params, int(sizes.min()))
    n_pcs = min(int(params["n_pcs"]), adata.n_vars - 1, adata.n_obs - 1)
    with tempfile.TemporaryDirectory(prefix="seurat_") as tmp:
        folder = Path(tmp)
        write_inputs(folder, adata, batch_key)
        out = folder / "embedding.tsv"
        cmd = [rscript, "--vanilla", str(R_SCRIPT), str(folder), str(out),
               f"reduction={params['reduction']}", f"k_anchor={int(params['k_anchor'])}",
               f"k_filter={ks['k_filter']}", f"k_score={int(params['k_score'])}", f"k_weight={ks['k_weight']}",
               f"dims={int(params['dims'])}", f"n_pcs={n_pcs}", f"seed={int(seed)}"]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode == SEURAT_MISSING_EXIT:
            raise RuntimeError(f"seurat: R package Seurat is not installed for {rscript} (Debian: "
                               f"r-cran-seurat; conda: r-seurat): {proc.stderr.strip()[-300:]}")
        if proc.returncode < 0:
            raise RuntimeError(f"seurat: Rscript was {killed_by_signal(proc.returncode)}: "
                               f"{proc.stderr.strip()[-1500:]}")
        if proc.returncode != 0 or not out.exists():
            raise RuntimeError(f"seurat: Rscript failed (exit {proc.returncode}): {proc.stderr.strip()[-1500:]}")
        table = pd.read_csv(out, sep="\t", index_col=0)
        info = dict(line.split("\t") for line in Path(f"{out}.info").read_text().splitlines() if line)
    table.index = table.index.astype(str)
    missing = adata.obs_names.difference(table.index)
    if len(missing):
        raise RuntimeError(f"seurat: {len(missing)} cells missing from Seurat's output, e.g. {missing[0]}")
    embedding = table.loc[adata.obs_names.astype(str)].to_numpy(dtype=np.float32)
    extra = {"reduction": params["reduction"], "k_weight_used": int(info["k_weight_used"]),
             "k_filter_used": ks["k_filter"], "n_anchors": int(info["n_anchors"]), "n_pcs": n_pcs}
    return IntegrationResult(embedding=embedding, extra=extra)
