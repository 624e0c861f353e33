"""The data stage: simulate or download raw data, validate it, preprocess it (file contracts: docs/contracts.md).

Modules: ``simulate`` (Splatter-style simulator, ResPAN scenarios), ``download`` (registry
downloads), ``ingest`` (raw-data validation, ``DataError``), ``preprocess`` (QC, normalization,
HVGs, PCA, ``subsample``); ``python -m datasets`` is the CLI the Snakemake rules call.
Importing this package is cheap (no scanpy).
"""

from __future__ import annotations

import os
from pathlib import Path


def write_h5ad_atomic(adata, path: str | os.PathLike) -> Path:
    """Write ``adata`` to ``path`` via a temporary file in the same folder and ``os.replace``.

    A reader (or a crashed job) never sees a half-written file; the temporary is removed when
    writing fails. Parent folders are created.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}.h5ad")
    try:
        adata.write_h5ad(tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path
