"""Validation of a raw dataset before preprocessing (design.md section 8, "bad data").

:func:`validate_raw` checks one raw AnnData against its registry entry (keys, counts location,
whether counts must be integers) and returns a clean copy with the counts in ``X`` and the
standard obs columns ``batch``, ``label``, ``system``, plus a provenance dict. Every problem
raises :class:`DataError` whose message names the dataset and the problem (and, for a
missing key, the keys that do exist). Fixable oddities (duplicated gene names; duplicated
cell names when allowed) are fixed and recorded in the provenance ``warnings``.
"""

from __future__ import annotations

import warnings

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp

STANDARD_KEYS = ("batch", "label", "system")
UNLABELLED = "unknown"
MIN_CELLS_PER_BATCH = 3
# Values checked per step in the integer test: bounds the temporary memory for 1M-cell data.
CHECK_CHUNK = 10_000_000


class DataError(ValueError):
    """Raw data that cannot be used; the message names the dataset and the problem."""


def _fail(dataset: str, problem: str) -> DataError:
    return DataError(f"dataset '{dataset}': {problem}")


def _preview(values, n: int = 5) -> str:
    values = [str(v) for v in values]
    more = f" ... (+{len(values) - n} more)" if len(values) > n else ""
    return ", ".join(values[:n]) + more


def get_counts(adata: ad.AnnData, counts: str, dataset: str):
    """The counts matrix named by ``counts``: ``"X"`` or ``"layers/<name>"``."""
    if counts == "X":
        matrix = adata.X
    elif counts.startswith("layers/"):
        layer = counts.split("/", 1)[1]
        if layer not in adata.layers:
            raise _fail(dataset, f"counts='{counts}' but there is no layer '{layer}'; "
                                 f"layers: {_preview(list(adata.layers)) or '(none)'}")
        matrix = adata.layers[layer]
    else:
        raise _fail(dataset, f"counts must be 'X' or 'layers/<name>', got '{counts}'")
    if matrix is None:
        raise _fail(dataset, f"counts='{counts}' is empty (None)")
    return matrix


def as_csr(matrix) -> sp.csr_matrix:
    """A CSR copy of a dense or sparse matrix (float matrices keep their dtype, except float16,
    which scipy.sparse cannot hold: it becomes float32, every value unchanged)."""
    if sp.issparse(matrix):
        return sp.csr_matrix(matrix, copy=True)
    dense = np.asarray(matrix)
    return sp.csr_matrix(dense.astype(np.float32) if dense.dtype == np.float16 else dense)


def check_values(matrix: sp.csr_matrix, dataset: str, counts: str, counts_integer: bool | None) -> bool:
    """Finite, non-negative, not all zero, integer unless declared otherwise. Returns is-integer."""
    values = matrix.data
    if values.size == 0 or not np.any(values):
        raise _fail(dataset, f"the counts matrix ({counts}) is empty: no nonzero value")
    if np.issubdtype(values.dtype, np.floating):
        n_nan, n_inf = int(np.isnan(values).sum()), int(np.isinf(values).sum())
        if n_nan or n_inf:
            raise _fail(dataset, f"the counts matrix ({counts}) has {n_nan} NaN and {n_inf} infinite values")
    n_negative = int((values < 0).sum())
    if n_negative:
        raise _fail(dataset, f"the counts matrix ({counts}) has {n_negative} negative values "
                             f"(min {values.min()}); raw counts are needed")
    is_integer = True
    if not np.issubdtype(values.dtype, np.integer):
        for start in range(0, values.size, CHECK_CHUNK):
            chunk = values[start:start + CHECK_CHUNK]
            fractional = chunk != np.round(chunk)
            if fractional.any():
                is_integer = False
                example = chunk[fractional][:3]
                break
    if not is_integer and counts_integer is not False:
        declared = "declared integer" if counts_integer else "expected to be integers"
        raise _fail(dataset, f"the counts matrix ({counts}) is {declared} but has non-integer values "
                             f"(e.g. {_preview(example.tolist(), 3)}); if these are not raw counts by "
                             "design, set counts_integer: false for this dataset")
    return is_integer


def require_obs_key(adata: ad.AnnData, key: str, role: str, dataset: str) -> None:
    if key not in adata.obs.columns:
        raise _fail(dataset, f"obs has no column '{key}' ({role}); obs columns: "
                             f"{_preview(list(adata.obs.columns), 30) or '(none)'}")


def standard_column(values: pd.Series, dataset: str, role: str, key: str, fill: str | None = None) -> pd.Categorical:
    """Categorical strings from an obs column; missing values are an error unless ``fill`` is given."""
    missing = values.isna().to_numpy()
    if missing.any():
        if fill is None:
            raise _fail(dataset, f"obs['{key}'] ({role}) has {int(missing.sum())} missing values")
        values = values.astype(object).where(~missing, fill)
    strings = values.astype(str)
    return pd.Categorical(strings, categories=sorted(pd.unique(strings)))


def make_names_unique(adata: ad.AnnData, dataset: str, duplicate_cells: str, notes: list[str]) -> None:
    """Cells: error (``duplicate_cells='error'``) or make unique; genes: always made unique, noted."""
    cells_dup = adata.obs_names.duplicated(keep=False)
    if cells_dup.any():
        names = pd.unique(adata.obs_names[cells_dup])
        what = f"{int(cells_dup.sum())} cells share {len(names)} duplicated names (e.g. {_preview(names)})"
        if duplicate_cells != "make_unique":
            raise _fail(dataset, f"{what}; to rename them (name-1, name-2, ...), set "
                                 f"datasets.{dataset}.preprocess.duplicate_cells: make_unique in the config "
                                 "(preprocess.duplicate_cells for every dataset)")
        adata.obs_names_make_unique()
        notes.append(f"{what}: cell names made unique")
    genes_dup = adata.var_names.duplicated(keep=False)
    if genes_dup.any():
        names = pd.unique(adata.var_names[genes_dup])
        adata.var_names_make_unique()
        notes.append(f"{int(genes_dup.sum())} genes share {len(names)} duplicated names "
                     f"(e.g. {_preview(names)}): gene names made unique")


def validate_raw(adata: ad.AnnData, *, dataset: str, batch_key: str, label_key: str | None,
                 system_key: str | None = None, counts: str = "X", counts_integer: bool | None = None,
                 duplicate_cells: str = "error") -> tuple[ad.AnnData, dict]:
    """Check a raw dataset; return (clean copy with counts in X and standard obs, provenance).

    counts: where the raw counts are, ``"X"`` or ``"layers/<name>"``. counts_integer: None =
    must be integers, True = declared integers (checked), False = non-integer values accepted.
    label_key None: unlabelled dataset, obs["label"] = "unknown". system_key None: system =
    batch. duplicate_cells: "error" or "make_unique". Originals stay under their own names; a
    pre-existing unrelated ``batch``/``label``/``system`` column is kept as ``<name>_original``.
    """
    if duplicate_cells not in ("error", "make_unique"):
        raise ValueError(f"duplicate_cells must be 'error' or 'make_unique', got '{duplicate_cells}'")
    if adata.n_obs == 0 or adata.n_vars == 0:
        raise _fail(dataset, f"the matrix is empty ({adata.n_obs} cells x {adata.n_vars} genes)")
    require_obs_key(adata, batch_key, "batch_key", dataset)
    if label_key is not None:
        require_obs_key(adata, label_key, "label_key", dataset)
    if system_key is not None:
        require_obs_key(adata, system_key, "system_key", dataset)
    matrix = as_csr(get_counts(adata, counts, dataset))
    is_integer = check_values(matrix, dataset, counts, counts_integer)

    notes: list[str] = []
    obs = adata.obs.copy()
    batch = standard_column(obs[batch_key], dataset, "batch_key", batch_key)
    if len(batch.categories) < 2:
        raise _fail(dataset, f"obs['{batch_key}'] has {len(batch.categories)} batch(es) "
                             f"({_preview(batch.categories)}); integration needs at least 2")
    if label_key is None:
        label = pd.Categorical([UNLABELLED] * adata.n_obs)
    else:
        label = standard_column(obs[label_key], dataset, "label_key", label_key, fill=UNLABELLED)
        n_unknown = int(obs[label_key].isna().sum())
        if n_unknown:
            notes.append(f"{n_unknown} cells without a label set to '{UNLABELLED}'")
    system = batch if system_key is None else standard_column(obs[system_key], dataset, "system_key", system_key)
    originals = {"batch": batch_key, "label": label_key, "system": system_key}
    for name, values in (("batch", batch), ("label", label), ("system", system)):
        if name in obs.columns and originals[name] != name:
            obs[f"{name}_original"] = obs.pop(name)
            notes.append(f"existing obs['{name}'] kept as obs['{name}_original']")
        obs[name] = values

    clean = ad.AnnData(X=matrix, obs=obs, var=adata.var.copy(), uns={k: v for k, v in adata.uns.items()})
    make_names_unique(clean, dataset, duplicate_cells, notes)
    for note in notes:
        warnings.warn(f"dataset '{dataset}': {note}", stacklevel=2)
    provenance = {
        "name": dataset, "batch_key": batch_key, "label_key": label_key, "system_key": system_key,
        "counts": counts, "counts_integer": bool(is_integer),
        "counts_integer_declared": counts_integer, "labelled": label_key is not None,
        "n_cells_raw": int(adata.n_obs), "n_genes_raw": int(adata.n_vars),
        "n_batches_raw": int(len(batch.categories)), "warnings": notes,
    }
    return clean, provenance


def check_batches_after_qc(adata: ad.AnnData, dataset: str, batches_before: list[str] | None = None,
                           min_cells: int = MIN_CELLS_PER_BATCH) -> None:
    """Every batch keeps at least ``min_cells`` cells after QC, and at least 2 batches remain.

    ``batches_before``: the batches before QC; anndata drops the category of a batch that QC
    emptied completely, so without this list such a batch would go unnoticed.
    """
    if adata.n_obs == 0 or adata.n_vars == 0:
        raise _fail(dataset, f"no data left after QC ({adata.n_obs} cells x {adata.n_vars} genes); "
                             "lower min_genes / min_cells")
    sizes = adata.obs["batch"].astype(str).value_counts()
    if batches_before is not None:
        sizes = sizes.reindex(list(batches_before), fill_value=0)
    small = sizes[sizes < min_cells]
    if len(small):
        listing = ", ".join(f"{name} ({n})" for name, n in small.items())
        raise _fail(dataset, f"batch(es) with fewer than {min_cells} cells after QC: {listing}")
    if (sizes > 0).sum() < 2:
        raise _fail(dataset, "fewer than 2 batches left after QC")
