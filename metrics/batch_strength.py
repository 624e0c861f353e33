"""Batch-effect strength of a dataset before integration (after sysVI, Hrovatin et al. 2025, Fig. 1c).

    python -m metrics.batch_strength --data DATA.h5ad --dataset NAME --out ROW.tsv
    python -m metrics.batch_strength combine --inputs ROW1.tsv ROW2.tsv ... --out batch_strength.tsv

sysVI compares, per cell type, Euclidean distances between the mean PCA embeddings of
(cell type x sample) groups on the non-integrated data (15 PCs, groups of >= 50 cells):
distances between samples of the same system vs between systems. A study's datasets often
have one batch per system (the simulations: two batches), so the distance between batch
means is put in relation to the spread of cells around them instead:

- **separation** (per cell type found with >= ``min_cells`` cells in at least two batches):
  the mean over batch pairs of the distance between the two batch means, divided by the
  within-batch spread (root mean squared distance of a cell to its batch mean, pooled over
  batches). The squared mean distance is corrected for its sampling noise
  (``s_a^2 / n_a + s_b^2 / n_b``, clipped at 0), so batches drawn from one distribution give
  ~0 at any group size; 1 means the batch means are one typical cell-to-mean distance apart.
  The dataset's value is the median over those cell types.
- **system_ratio** (only when some system holds two or more batches of a cell type): sysVI's
  own comparison, mean between-system distance of batch means over mean within-system
  distance, median over cell types; ~1 when systems differ no more than batches within them.

Computed on ``obsm["X_pca"]`` (first 15 PCs) of the preprocessed file, i.e. on log-normalized,
unscaled HVGs (sysVI used scaled data); one row per dataset.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd

N_PCS = 15  # sysVI Fig. 1c
MIN_CELLS = 50  # sysVI Fig. 1c: groups with at least 50 cells

COLUMNS = ["dataset", "source", "n_cells", "n_batches", "n_labels", "n_pcs", "min_cells", "n_shared_types",
           "separation", "separation_min", "separation_max", "system_ratio", "batch_unique_types",
           "per_type", "note"]


def group_stats(X: np.ndarray) -> tuple[np.ndarray, float, int]:
    """Mean, unbiased mean squared distance to the mean (summed over dimensions), size."""
    n = X.shape[0]
    mean = X.mean(axis=0)
    spread = float(((X - mean) ** 2).sum() / max(n - 1, 1))
    return mean, spread, n


def mean_distance(a: tuple, b: tuple) -> float:
    """Distance of two group means with the sampling noise of the means taken out (>= 0)."""
    d2 = float(((a[0] - b[0]) ** 2).sum()) - a[1] / a[2] - b[1] / b[2]
    return float(np.sqrt(max(d2, 0.0)))


def type_strength(X: np.ndarray, batch: np.ndarray, system: np.ndarray | None,
                  min_cells: int) -> dict[str, float] | None:
    """separation (and system_ratio) of one cell type's cells; None when < 2 batches qualify."""
    stats, sys_of = {}, {}
    for b in np.unique(batch):
        mask = batch == b
        if mask.sum() >= min_cells:
            stats[b] = group_stats(X[mask])
            if system is not None:
                sys_of[b] = system[mask][0]
    if len(stats) < 2:
        return None
    pairs = list(itertools.combinations(stats, 2))
    dists = {p: mean_distance(stats[p[0]], stats[p[1]]) for p in pairs}
    within = np.sqrt(np.mean([s[1] for s in stats.values()]))
    out = {"separation": float(np.mean(list(dists.values())) / within) if within > 0 else np.nan,
           "system_ratio": np.nan}
    if sys_of:
        same = [d for (a, b), d in dists.items() if sys_of[a] == sys_of[b]]
        diff = [d for (a, b), d in dists.items() if sys_of[a] != sys_of[b]]
        if same and diff and np.mean(same) > 0:
            out["system_ratio"] = float(np.mean(diff) / np.mean(same))
    return out


def dataset_source(uns: dict) -> str:
    """'simulated: <scenario>' for the simulator's files, else the provenance source text."""
    sim = uns.get("simulation")
    if isinstance(sim, dict) and sim.get("scenario"):
        return f"simulated: {sim['scenario']}"
    prov = uns.get("dataset")
    if isinstance(prov, dict) and prov.get("source"):
        return str(prov["source"])
    return ""


def batch_strength(X_pca: np.ndarray, batch, labels, system=None, *, dataset: str = "", source: str = "",
                   n_pcs: int = N_PCS, min_cells: int = MIN_CELLS) -> dict[str, object]:
    """The batch_strength.tsv row of one dataset (see the module docstring)."""
    X = np.asarray(X_pca, dtype=np.float64)[:, :n_pcs]
    batch = np.asarray(batch).astype(str)
    labels = np.asarray(labels).astype(str)
    system = None if system is None else np.asarray(system).astype(str)
    types = sorted(np.unique(labels))
    per_type = {}
    for t in types:
        mask = labels == t
        res = type_strength(X[mask], batch[mask], None if system is None else system[mask], min_cells)
        if res is not None:
            per_type[t] = res
    unique = [t for t in types if np.unique(batch[labels == t]).size == 1]
    sep = np.array([r["separation"] for r in per_type.values()], dtype=float)
    ratios = np.array([r["system_ratio"] for r in per_type.values()], dtype=float)
    note = "" if per_type else f"no cell type has >= {min_cells} cells in two or more batches"
    return {
        "dataset": dataset, "source": source, "n_cells": int(X.shape[0]), "n_batches": int(np.unique(batch).size),
        "n_labels": len(types), "n_pcs": int(X.shape[1]), "min_cells": int(min_cells),
        "n_shared_types": len(per_type),
        "separation": float(np.nanmedian(sep)) if np.isfinite(sep).any() else np.nan,
        "separation_min": float(np.nanmin(sep)) if np.isfinite(sep).any() else np.nan,
        "separation_max": float(np.nanmax(sep)) if np.isfinite(sep).any() else np.nan,
        "system_ratio": float(np.nanmedian(ratios)) if np.isfinite(ratios).any() else np.nan,
        "batch_unique_types": ", ".join(unique),
        "per_type": "; ".join(f"{t}: {r['separation']:.2f}" for t, r in per_type.items()),
        "note": note,
    }


def from_file(path: str | Path, dataset: str, n_pcs: int = N_PCS, min_cells: int = MIN_CELLS) -> dict:
    """batch_strength() of a preprocessed dataset file (obs batch/label/system, obsm X_pca)."""
    import anndata as ad

    from datasets.failure import failed_dataset

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"data file {path} does not exist")
    failure = failed_dataset(path)
    if failure is not None:  # a failed dataset's record (datasets/failure.py): a row that says so
        return {**{c: np.nan for c in COLUMNS}, "dataset": dataset, "source": "",
                "note": f"dataset failed ({failure.get('stage', '')}): {failure.get('error', '')}"}
    adata = ad.read_h5ad(path)
    for key in ("batch", "label"):
        if key not in adata.obs:
            raise KeyError(f"data file {path}: obs has no column '{key}' (run the preprocess step)")
    if "X_pca" not in adata.obsm:
        raise KeyError(f"data file {path}: obsm has no 'X_pca' (the unintegrated PCA of the preprocess step)")
    system = adata.obs["system"] if "system" in adata.obs else None
    if not dict(adata.uns.get("dataset", {})).get("labelled", True):
        row = batch_strength(adata.obsm["X_pca"], adata.obs["batch"], np.full(adata.n_obs, "all cells"), system,
                             dataset=dataset, source=dataset_source(dict(adata.uns)), n_pcs=n_pcs,
                             min_cells=min_cells)
        return {**row, "n_labels": 0, "batch_unique_types": "",
                "note": "unlabelled: all cells as one group, so cell-type differences between batches count too"}
    return batch_strength(adata.obsm["X_pca"], adata.obs["batch"], adata.obs["label"], system, dataset=dataset,
                          source=dataset_source(dict(adata.uns)), n_pcs=n_pcs, min_cells=min_cells)


def main(argv: list[str] | None = None) -> int:
    from metrics.aggregate import write_table

    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["combine"]:
        parser = argparse.ArgumentParser(prog="python -m metrics.batch_strength combine")
        parser.add_argument("--inputs", nargs="*", default=[])
        parser.add_argument("--out", required=True)
        args = parser.parse_args(argv[1:])
        parts = [pd.read_csv(p, sep="\t") for p in args.inputs]
        table = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=COLUMNS)
        write_table(table[COLUMNS], args.out)
        return 0
    parser = argparse.ArgumentParser(prog="python -m metrics.batch_strength", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, help="preprocessed dataset (.h5ad)")
    parser.add_argument("--dataset", required=True, help="dataset name")
    parser.add_argument("--out", required=True, help="one-row TSV to write")
    parser.add_argument("--n-pcs", type=int, default=N_PCS)
    parser.add_argument("--min-cells", type=int, default=MIN_CELLS)
    args = parser.parse_args(argv)
    try:
        row = from_file(args.data, args.dataset, args.n_pcs, args.min_cells)
    except (FileNotFoundError, KeyError) as exc:
        print(f"error: {exc.args[0] if isinstance(exc, KeyError) else exc}", file=sys.stderr)
        return 2
    write_table(pd.DataFrame([row], columns=COLUMNS), args.out)
    print(json.dumps({k: row[k] for k in ("dataset", "separation", "n_shared_types", "note")}), file=sys.stderr)
    return 0


if __name__ == "__main__":
    from guards.cli import guarded

    sys.exit(guarded("python -m metrics.batch_strength", main))
