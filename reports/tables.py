"""Read the benchmark tables (docs/contracts.md "Tables") that the figures are drawn from.

Every table is optional: a study that has not produced a table yet (no scaling study, no
semi-supervised runs) simply has no figure for it. A table that exists but breaks the
contract (missing columns, bad status values) is an error naming the file and the problem.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

# table name -> file name inside the tables folder
TABLE_FILES: dict[str, str] = {
    "runs": "runs.tsv",
    "metrics": "metrics.tsv",
    "scores": "scores.tsv",
    "best": "best.tsv",
    "summary": "summary.tsv",
    "scaling": "scaling.tsv",
    "lisi_percell": "lisi_percell.tsv.gz",
    "umap": "umap.tsv.gz",
    "loss_history": "loss_history.tsv.gz",
    "claims": "claims.tsv",
    "claim_tests": "claim_tests.tsv",
    "batch_strength": "batch_strength.tsv",
    "label_transfer": "label_transfer.tsv",
    "search": "search.tsv",
    "novel_type": "novel_type.tsv",
}

# the columns each figure relies on; the rest of a table is passed through untouched
REQUIRED_COLUMNS: dict[str, list[str]] = {
    "runs": ["dataset", "method", "setting", "seed", "status", "error"],
    "metrics": ["dataset", "method", "setting", "seed", "status", "metric", "value", "metric_type"],
    "scores": ["dataset", "method", "setting", "seed", "status", "bio", "batch", "overall"],
    "best": ["dataset", "method", "best_setting", "bio", "batch", "overall"],
    "summary": ["method", "overall", "bio", "batch", "rank"],
    "scaling": ["dataset", "method", "n_cells", "device", "status", "s", "max_rss_mb"],
    "lisi_percell": ["dataset", "method", "metric", "value"],
    "umap": ["dataset", "method", "x", "y", "batch", "label"],
    "loss_history": ["dataset", "method", "setting", "seed", "term", "epoch", "value", "reconstruction"],
    "claims": ["claim_id", "paper", "figure", "quote", "claim", "dataset", "rule", "numbers", "verdict", "why"],
    "claim_tests": ["claim_id", "dataset", "metric", "method_a", "method_b", "p_adj"],
    "batch_strength": ["dataset", "separation", "n_shared_types", "note"],
    "label_transfer": ["dataset", "method", "seed", "status", "reference", "target", "accuracy", "macro_f1",
                       "chance_accuracy"],
    "search": ["dataset", "method", "arm", "trial", "setting", "n_seeds", "score", "best_so_far", "runs"],
    "novel_type": ["dataset", "method", "setting", "seed", "status", "novel_label", "finetune_epochs", "n_novel"],
}

# identifiers are always strings (a setting slug "1" must not become the number 1)
STRING_COLUMNS = ["dataset", "method", "setting", "base_setting", "best_setting", "status", "error", "device",
                  "metric", "metric_type", "representative_run", "run_path", "converged", "learned",
                  "latent_scale_flag", "term", "setting_a", "setting_b", "values_a", "values_b", "reference",
                  "target", "arm", "novel_label", "nearest_type", "top_called_label"]
# in the umap table batch and label are categories; elsewhere "batch" is the batch score
UMAP_STRING_COLUMNS = ["batch", "label", "cell"]


def string_columns(name: str) -> list[str]:
    """Columns of table ``name`` that hold identifiers (read and kept as strings)."""
    return STRING_COLUMNS + (UMAP_STRING_COLUMNS if name == "umap" else [])

STATUS_VALUES = {"ok", "failed"}


def check_columns(df: pd.DataFrame, name: str, source: str) -> None:
    """Raise ValueError naming ``source`` when ``df`` lacks a column the figures need."""
    missing = [c for c in REQUIRED_COLUMNS.get(name, []) if c not in df.columns]
    if missing:
        raise ValueError(f"{source}: missing column(s) {', '.join(missing)} "
                         f"(has: {', '.join(map(str, df.columns))})")
    if "status" in df.columns:
        bad = sorted(set(df["status"].dropna().astype(str)) - STATUS_VALUES)
        if bad:
            raise ValueError(f"{source}: column 'status' has value(s) {', '.join(bad)}; "
                             f"expected one of {', '.join(sorted(STATUS_VALUES))}")


def normalize_table(df: pd.DataFrame, name: str) -> pd.DataFrame:
    """Identifier columns as strings (NaN kept as NaN), empty errors as ''."""
    df = df.copy()
    for col in string_columns(name):
        if col in df.columns:
            df[col] = df[col].map(lambda v: v if pd.isna(v) else str(v)).astype(object)
    if "error" in df.columns:
        df["error"] = df["error"].fillna("")
    return df


def read_table(path: str | Path, name: str) -> pd.DataFrame:
    """Read one TSV table (gzip by suffix), check its contract, normalize identifiers."""
    path = Path(path)
    try:
        df = pd.read_csv(path, sep="\t", dtype={c: str for c in string_columns(name)})
    except pd.errors.EmptyDataError:
        return pd.DataFrame(columns=REQUIRED_COLUMNS.get(name, []))
    check_columns(df, name, str(path))
    return normalize_table(df, name)


def read_tables(folder: str | Path) -> dict[str, pd.DataFrame]:
    """Every table of ``TABLE_FILES`` that exists in ``folder`` (absent ones are left out)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"tables folder {folder} does not exist")
    return {name: read_table(folder / fname, name)
            for name, fname in TABLE_FILES.items() if (folder / fname).exists()}


def metric_columns(df: pd.DataFrame, fixed: list[str]) -> list[str]:
    """Raw metric columns of a wide table: numeric, not in ``fixed``, not ``scaled_*``."""
    return [c for c in df.columns
            if c not in fixed and not str(c).startswith("scaled_") and pd.api.types.is_numeric_dtype(df[c])]


def metric_types(metrics: pd.DataFrame | None) -> dict[str, str]:
    """metric -> bio|batch|other from the long metrics table (empty when absent)."""
    if metrics is None or metrics.empty:
        return {}
    pairs = metrics[["metric", "metric_type"]].dropna().drop_duplicates("metric")
    return dict(zip(pairs["metric"], pairs["metric_type"]))


def dataset_titles(batch_strength: pd.DataFrame | None, datasets) -> dict[str, str]:
    """dataset -> 'name (batch separation 1.28)' heading, from batch_strength.tsv when it has the dataset."""
    names = sorted(pd.Series(datasets).dropna().astype(str).unique())
    sep = {} if batch_strength is None or batch_strength.empty else \
        dict(zip(batch_strength["dataset"].astype(str), batch_strength["separation"]))
    return {d: d if d not in sep else f"{d} (batch separation {sep[d]:.2f})" if pd.notna(sep[d])
            else f"{d} (batch separation n/a)" for d in names}
