"""What the figure modules share: the tables' fixed columns, the run-status marks, facet sizes,
ordering, scaling and the per-run status columns the figures draw failed runs from."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd

BEST_FIXED = ["dataset", "method", "best_setting", "representative_seed", "representative_run", "n_seeds",
              "n_failed", "within_overall", "bio", "batch", "overall", "combined_5050", "rank", "status",
              "error", "label_missing", "criterion", "criterion_source", "n_failed_seeds", "failed_seeds_rule",
              "bio_proxy", "bio_weight"]
COMPOSITES = ["bio", "batch", "overall"]
STATUS_SHAPES = {"ok": "o", "failed": "x"}
FAILED_COLOUR = "#d62728"
UMAP_COLUMNS = 6  # panels per row of the UMAP grids
RST_DIR = Path(__file__).resolve().parent / "rst"  # captions for snakemake --report: RST_DIR/<name>.rst


def is_empty(df: pd.DataFrame | None) -> bool:
    """True for a missing or row-less table."""
    return df is None or len(df) == 0


def natural_key(text: str) -> list:
    """Sort key that orders numbers inside strings numerically (kl_weight-1.5 < kl_weight-10)."""
    # no sign: in slugs like "kl_weight-5" the dash separates name and value
    number = r"\d+(?:\.\d+)?(?:e-?\d+)?"
    parts = re.split(f"({number})", str(text))
    return [(0, float(p)) if re.fullmatch(number, p) else (1, p) for p in parts if p]


def ordered_categorical(values: pd.Series, order: list[str] | None = None) -> pd.Categorical:
    """Categorical of ``values`` in ``order`` (default: natural sort of the distinct values)."""
    cats = order if order is not None else sorted(values.dropna().astype(str).unique(), key=natural_key)
    return pd.Categorical(values.astype(str), categories=cats, ordered=True)


def figure_size(n_cols: int, n_rows: int, col_w: float = 2.8, row_h: float = 2.4,
                extra_w: float = 2.5, extra_h: float = 1.2) -> tuple[float, float]:
    """Figure size in inches for a facet layout, capped so huge studies stay printable."""
    return (min(extra_w + col_w * max(n_cols, 1), 24.0), min(extra_h + row_h * max(n_rows, 1), 30.0))


def with_run_status(df: pd.DataFrame) -> pd.DataFrame:
    """Copy of a per-run table with a clean ``status`` column (missing status counts as ok)."""
    df = df.copy()
    if "status" not in df.columns:
        df["status"] = "ok"
    df["status"] = df["status"].fillna("ok").astype(str)
    return df


def fully_labelled(scores: pd.DataFrame) -> pd.DataFrame:
    """Runs with all labels visible (the runs that selection and sweeps are about)."""
    if "label_missing" not in scores.columns:
        return scores
    return scores[scores["label_missing"].fillna(0) == 0]


def best_with_status(best: pd.DataFrame, runs: pd.DataFrame | None = None) -> pd.DataFrame:
    """best.tsv with ``status`` (failed: no usable composite) and ``error``, plus a failed row
    for every dataset x method that has runs in runs.tsv but no row in best.tsv."""
    b = fully_labelled(best).copy()
    b["status"] = np.where(b["overall"].isna() | b["best_setting"].isna(), "failed", "ok")
    if "error" not in b.columns:
        b["error"] = ""
    if not is_empty(runs):
        runs = with_run_status(runs)
        first_error = (runs[runs["status"] == "failed"].groupby(["dataset", "method"])["error"].first()
                       .to_dict())
        b["error"] = [e if e else first_error.get((d, m), "") for d, m, e in
                      zip(b["dataset"], b["method"], b["error"].fillna(""))]
        known = set(zip(b["dataset"], b["method"]))
        extra = [{"dataset": d, "method": m, "status": "failed", "error": first_error.get((d, m), "")}
                 for d, m in runs[["dataset", "method"]].drop_duplicates().itertuples(index=False)
                 if (d, m) not in known]
        if extra:
            b = pd.concat([b, pd.DataFrame(extra)], ignore_index=True)
    return b


def scale_min_max(values: pd.Series) -> pd.Series:
    """Min-max scale to [0, 1]; a constant column becomes 1 (all tied at the best)."""
    lo, hi = values.min(), values.max()
    if pd.isna(lo) or hi == lo:
        return values.where(values.isna(), 1.0)
    return (values - lo) / (hi - lo)


def find_columns(df: pd.DataFrame, pattern: str) -> list[str]:
    """Raw (unscaled) columns whose name matches the regular expression ``pattern``."""
    return [c for c in df.columns if re.search(pattern, str(c)) and not str(c).startswith("scaled_")]
