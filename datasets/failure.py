"""Failed-dataset records: a dataset that cannot be used is recorded, not fatal (issue #17).

When a dataset's data is bad (a missing key, one batch, NaN counts, ...) or its download fails,
the data stage writes its output anyway, as a record of the failure: an h5ad with no cells whose
``uns["dataset_json"]`` is ``{"name", "status": "failed", "stage", "error"}`` (docs/contracts.md).
The runs of that dataset are then recorded as failed with this error (methods/runner.py), so the
study's tables and report are still made for every other dataset, and show this one as failed.
``strict: true`` keeps the old behaviour: the job fails and nothing is written.

A record is redone like any output: when the config (keys, preprocess options) or a local file
changes, or when it is deleted.
"""

from __future__ import annotations

import json
from pathlib import Path


def write_failed_dataset(path: str | Path, name: str, stage: str, error: str) -> Path:
    """Write the failure record of dataset ``name`` (failed at ``stage``) to ``path``, atomically."""
    import anndata as ad

    from datasets import write_h5ad_atomic

    record = {"name": name, "status": "failed", "stage": stage, "error": error}
    adata = ad.AnnData(uns={"dataset": record, "dataset_json": json.dumps(record)})
    return write_h5ad_atomic(adata, path)


def failed_dataset(path: str | Path) -> dict | None:
    """The failure record of a data file, or None when it is a usable dataset (or no h5ad at all)."""
    import h5py

    try:
        with h5py.File(path, "r") as f:
            raw = f["uns"]["dataset_json"][()] if "uns" in f and "dataset_json" in f["uns"] else None
    except OSError:
        return None
    if raw is None:
        return None
    record = json.loads(raw.decode() if isinstance(raw, bytes) else raw)
    return record if record.get("status") == "failed" else None
