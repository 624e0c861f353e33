"""Validation of a raw dataset before preprocessing (bad data: one clear line naming the file and key).

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
# Label values that mean "no label" (metrics/score.py's default unknown_labels, plus None): such
# cells become UNLABELLED, left out of the label metrics and hidden from supervised methods.
UNLABELLED_VALUES = ("unknown", "Unknown", "nan", "NaN", "None", "")
MIN_CELLS_PER_BATCH = 3
# Values checked per step in the integer test: bounds the temporary memory for 1M-cell data.
CHECK_CHUNK = 10_000_000
# Counts stored as floats after arithmetic (e.g. 2.9999998) are integers within this; rounded.
INTEGER_TOLERANCE = 1e-3
# A batch or label column with more distinct values than this and than half the cells is per cell.
PER_CELL_MIN_GROUPS = 50
LOG_CHECK_CELLS = 10_000  # cells looked at to tell log-normalised data from counts


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


def _integer_like(values: np.ndarray) -> np.ndarray:
    """Which values are integers within ``INTEGER_TOLERANCE`` (float32 arithmetic leaves 2.9999998)."""
    return np.abs(values - np.round(values)) <= INTEGER_TOLERANCE


def holds_counts(matrix) -> bool:
    """Whether the first ``CHECK_CHUNK`` stored values of a matrix look like raw counts: non-negative
    integers, not only 0 and 1."""
    values = (matrix.data if sp.issparse(matrix) else np.asarray(matrix).ravel())[:CHECK_CHUNK]
    if values.dtype == bool or values.size == 0:
        return False
    values = values.astype(np.float64)
    return bool(np.isfinite(values).all() and (values >= 0).all() and _integer_like(values).all()
                and values.max() > 1)


def integer_layers(adata: ad.AnnData, exclude: str) -> list[str]:
    """Layers (other than ``exclude``) that look like raw counts (``holds_counts``)."""
    return [name for name, layer in adata.layers.items() if f"layers/{name}" != exclude and holds_counts(layer)]


def looks_log_normalised(matrix: sp.csr_matrix) -> str | None:
    """Why ``matrix`` looks like log-normalised data rather than counts, else None: expm1 of each
    cell sums to the same total (normalize_total + log1p), or expm1 gives integers (log1p of counts)."""
    unlogged = matrix[:LOG_CHECK_CELLS].copy()  # a sample of cells bounds the memory on atlases
    values = unlogged.data
    if values.size == 0 or values.max() > 30:  # expm1 of more than 30: not a log scale
        return None
    unlogged.data = np.expm1(values.astype(np.float64))
    totals = np.asarray(unlogged.sum(axis=1)).ravel()
    totals = totals[totals > 0]
    if totals.size > 1 and np.ptp(totals) <= 1e-3 * np.median(totals):
        return f"expm1 of every cell sums to {np.median(totals):.4g} (normalize_total + log1p)"
    if _integer_like(unlogged.data[:CHECK_CHUNK]).all():
        return "expm1 of its values gives integers (log1p of counts)"
    return None


def check_values(matrix: sp.csr_matrix, dataset: str, counts: str, counts_integer: bool | None,
                 adata: ad.AnnData | None = None, notes: list[str] | None = None) -> bool:
    """Finite, non-negative, not all zero, not boolean or 0/1 only, integer (within tolerance, then
    rounded in place) unless declared otherwise. Returns is-integer. ``adata``: the file, whose
    layers are named when they hold the counts that ``counts`` does not; ``notes``: warnings."""
    values = matrix.data
    if values.dtype == bool:
        raise _fail(dataset, f"the counts matrix ({counts}) is boolean (True/False), not counts"
                             + _layer_advice(adata, counts))
    if values.size == 0 or not np.any(values):
        raise _fail(dataset, f"the counts matrix ({counts}) is empty: no nonzero value")
    if np.issubdtype(values.dtype, np.floating):
        n_nan, n_inf = int(np.isnan(values).sum()), int(np.isinf(values).sum())
        if n_nan or n_inf:
            raise _fail(dataset, f"the counts matrix ({counts}) has {n_nan} NaN and {n_inf} infinite values")
    n_negative = int((values < 0).sum())
    if n_negative:
        raise _fail(dataset, f"the counts matrix ({counts}) has {n_negative} negative values "
                             f"(min {values.min()}); raw counts are needed" + _layer_advice(adata, counts))
    is_integer = True
    if not np.issubdtype(values.dtype, np.integer):
        for start in range(0, values.size, CHECK_CHUNK):
            chunk = values[start:start + CHECK_CHUNK]
            fractional = ~_integer_like(chunk)
            if fractional.any():
                is_integer = False
                example = chunk[fractional][:3]
                break
        if is_integer:  # integers within tolerance: make them exact
            np.round(values, out=values)
    if is_integer and values.max() <= 1:
        raise _fail(dataset, f"the counts matrix ({counts}) holds only 0 and 1: binarised data, not counts"
                             + _layer_advice(adata, counts))
    log_scale = None if is_integer else looks_log_normalised(matrix)
    if log_scale:
        raise _fail(dataset, f"the counts matrix ({counts}) looks log-normalised, not counts ({log_scale})"
                             + (_layer_advice(adata, counts) or "; give the raw counts (counts: X or "
                                "counts: layers/<name>)"))
    if not is_integer and counts_integer is not False:
        declared = "declared integer" if counts_integer else "expected to be integers"
        advice = _layer_advice(adata, counts) or ("; if these are not raw counts by design, set counts_integer: "
                                                  "false for this dataset")
        raise _fail(dataset, f"the counts matrix ({counts}) is {declared} but has non-integer values "
                             f"(e.g. {_preview(example.tolist(), 3)}){advice}")
    if not is_integer and notes is not None and adata is not None and integer_layers(adata, counts):
        notes.append(f"counts ({counts}) are non-integer (counts_integer: false) while "
                     f"{_layer_advice(adata, counts)[2:]}")
    return is_integer


def _layer_advice(adata: ad.AnnData | None, counts: str) -> str:
    """'; layer X holds integer counts: set counts: layers/X' when one does (or adata.raw does), else ''."""
    layers = integer_layers(adata, counts) if adata is not None else []
    if not layers and adata is not None and adata.raw is not None and holds_counts(adata.raw.X):
        return ("; adata.raw holds integer counts: store them as a layer of the file (adata.layers['counts'] = "
                "adata.raw[:, adata.var_names].X, or adata.raw.to_adata() for all genes) and set counts: "
                "layers/counts")
    if not layers:
        return ""
    return (f"; layer '{layers[0]}' holds integer counts: set counts: layers/{layers[0]} for this dataset"
            + (f" (integer layers: {_preview(layers)})" if len(layers) > 1 else ""))


def require_obs_key(adata: ad.AnnData, key: str, role: str, dataset: str) -> None:
    if key not in adata.obs.columns and key in adata.var.columns:
        raise _fail(dataset, f"'{key}' ({role}) is a var column, not an obs column: the matrix looks transposed "
                             f"(genes x cells, {adata.n_obs} x {adata.n_vars}); store it cells x genes (adata.T)")
    if key not in adata.obs.columns:
        raise _fail(dataset, f"obs has no column '{key}' ({role}); obs columns: "
                             f"{_preview(list(adata.obs.columns), 30) or '(none)'}")


def check_not_per_cell(values: pd.Series, key: str, role: str, what: str, dataset: str) -> None:
    """A batch or label column is groups of cells, not a per-cell value (a barcode, a count)."""
    if pd.api.types.is_float_dtype(values):
        fractional = values.dropna().to_numpy()
        fractional = fractional[fractional != np.round(fractional)]
        if fractional.size:
            raise _fail(dataset, f"obs['{key}'] ({role}) holds continuous numbers (e.g. "
                                 f"{_preview(fractional[:3].tolist(), 3)}), not {what}; name the obs column of the {what}")
    n_distinct, n_cells = values.nunique(), len(values)
    if n_distinct > max(PER_CELL_MIN_GROUPS, n_cells // 2):
        raise _fail(dataset, f"obs['{key}'] ({role}) has {n_distinct} distinct values for {n_cells} cells: a value "
                             f"per cell, not {what}; name the obs column of the {what}")


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
    check_not_per_cell(adata.obs[batch_key], batch_key, "batch_key", "batches", dataset)
    if label_key is not None:
        require_obs_key(adata, label_key, "label_key", dataset)
        check_not_per_cell(adata.obs[label_key], label_key, "label_key", "cell types", dataset)
        if label_key == batch_key:
            raise _fail(dataset, f"label_key and batch_key are both '{label_key}': the cell-type labels must be "
                                 "another obs column than the batches (or no label_key for unlabelled data)")
    if system_key is not None:
        require_obs_key(adata, system_key, "system_key", dataset)
    matrix = as_csr(get_counts(adata, counts, dataset))
    notes: list[str] = []
    is_integer = check_values(matrix, dataset, counts, counts_integer, adata, notes)

    obs = adata.obs.copy()
    batch = standard_column(obs[batch_key], dataset, "batch_key", batch_key)
    if len(batch.categories) < 2:
        raise _fail(dataset, f"obs['{batch_key}'] has {len(batch.categories)} batch(es) "
                             f"({_preview(batch.categories)}); integration needs at least 2")
    if label_key is None:
        label = pd.Categorical([UNLABELLED] * adata.n_obs)
    else:
        values = obs[label_key]
        missing = values.isna().to_numpy() | values.astype(str).str.strip().isin(UNLABELLED_VALUES).to_numpy()
        label = standard_column(values.astype(object).where(~missing, None), dataset, "label_key", label_key,
                                fill=UNLABELLED)
        n_unknown = int(missing.sum())
        if n_unknown:
            notes.append(f"{n_unknown} cells without a label (missing, or one of "
                         f"{', '.join(repr(v) for v in UNLABELLED_VALUES)}) are unlabelled ('{UNLABELLED}'): "
                         "left out of the label metrics")
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
        "n_batches_raw": int(len(batch.categories)), "n_unlabelled_raw": int((label == UNLABELLED).sum()),
        "warnings": notes,
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
        listing = _preview([f"{name} ({n})" for name, n in small.items()], 10)
        raise _fail(dataset, f"batch(es) with fewer than {min_cells} cells after QC: {listing}")
    if (sizes > 0).sum() < 2:
        raise _fail(dataset, "fewer than 2 batches left after QC")
