"""Data of the missing-label figure (scDREAMER Fig. 5 / 6h-k): supervised methods trained with a
share of the cell-type labels hidden, compared across methods at every share.

Which runs: every method with hidden-label runs (``label_missing`` > 0); for each dataset x
method, the runs of its best setting (chosen on fully labelled runs, best.tsv) and of that
setting's hidden-label variants (scores.tsv's ``base_setting``: the fully labelled setting a run
was made from); all its runs when best.tsv has no best setting for it. Tables without that column
(written before it existed) give no missing-label figure: rebuild them with the aggregate step.

Datasets without cell-type labels (no macro-F1, NMI or ARI value in any run: an unlabelled
dataset) are left out, since no label can be hidden there; the caption says so.

What is shown per run: macro-F1 of the predicted labels of the hidden cells, the raw NMI, ARI
and iLISI, and a composite that is comparable across methods. The within-method scores of
scores.tsv are not: each method is scaled over its own runs. The composite here scales each
bio and batch metric (types from metrics.tsv) min-max over all these supervised runs of the
dataset (every method, share and seed), then composite = w * bio + (1 - w) * batch with the
study's ``bio_weight`` w (best.tsv; 0.6 when absent). Raw metrics are oriented so that higher
is better (reports/figures.py), so no metric is flipped.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

RAW_SCORES = {"macro_f1": "macro-F1 (hidden cells)", "nmi": "NMI", "ari": "ARI", "ilisi": "iLISI"}
COMPOSITE = "composite\nacross methods"
KEYS = ["dataset", "method", "setting", "base_setting", "seed", "label_missing", "status"]


def hidden_label_runs(scores: pd.DataFrame, best: pd.DataFrame | None) -> pd.DataFrame:
    """Runs of the methods with hidden-label runs, at each one's best setting (module docstring)."""
    if "label_missing" not in scores.columns or "base_setting" not in scores.columns:
        return scores.iloc[0:0]
    s = scores.copy()
    s["label_missing"] = s["label_missing"].fillna(0.0).astype(float)
    s["status"] = s["status"].fillna("ok").astype(str) if "status" in s.columns else "ok"
    s = s[s["method"].isin(s.loc[s["label_missing"] > 0, "method"].unique())]
    chosen = {}
    if best is not None and len(best):
        chosen = best.dropna(subset=["best_setting"]).set_index(["dataset", "method"])["best_setting"].to_dict()
    keep = [chosen.get((d, m), b) == b for d, m, b in zip(s["dataset"], s["method"], s["base_setting"])]
    s = s[keep]
    label_scores = [c for c in ("macro_f1", "nmi", "ari") if c in s.columns]
    labelled = s[s["status"] == "ok"].groupby("dataset")[label_scores].count().sum(axis=1) > 0
    return s[s["dataset"].isin(labelled[labelled].index)]


def scaled_composite(runs: pd.DataFrame, bio: list[str], batch: list[str], bio_weight: float) -> pd.Series:
    """Per run: w * bio + (1 - w) * batch of metrics min-max scaled over the dataset's runs."""
    ok = runs["status"] == "ok"
    parts = []
    for _, block in runs.groupby("dataset", sort=False):
        scaled = {}
        for m in [c for c in bio + batch if c in block.columns]:
            v = block[m].where(ok[block.index]).astype(float)
            lo, hi = v.min(), v.max()
            scaled[m] = v * 0 + 0.5 if hi == lo else (v - lo) / (hi - lo)
        scaled = pd.DataFrame(scaled, index=block.index)
        b = scaled[[m for m in bio if m in scaled]].mean(axis=1)
        t = scaled[[m for m in batch if m in scaled]].mean(axis=1)
        parts.append(bio_weight * b + (1 - bio_weight) * t)
    return pd.concat(parts) if parts else pd.Series(dtype=float)


def missing_label_long(scores: pd.DataFrame, best: pd.DataFrame | None = None,
                       types: dict[str, str] | None = None) -> pd.DataFrame:
    """Long table (KEYS + score, value) of the missing-label figure; failed runs have value NaN.
    ``types``: metric -> bio|batch|other (metrics.tsv); without it there is no composite."""
    runs = hidden_label_runs(scores, best)
    if runs.empty:
        return pd.DataFrame(columns=KEYS + ["score", "value"])
    runs = runs.copy()
    value_cols = {c: label for c, label in RAW_SCORES.items() if c in runs.columns}
    bio = [m for m, t in (types or {}).items() if t == "bio"]
    batch = [m for m, t in (types or {}).items() if t == "batch"]
    if bio and batch:
        weight = 0.6
        if best is not None and "bio_weight" in best.columns and best["bio_weight"].notna().any():
            weight = float(best["bio_weight"].dropna().iloc[0])
        runs["composite"] = scaled_composite(runs, bio, batch, weight)
        value_cols["composite"] = COMPOSITE
    long = runs.melt(id_vars=KEYS, value_vars=list(value_cols), var_name="score")
    long.loc[long["status"] != "ok", "value"] = np.nan
    long["score"] = long["score"].map(value_cols)
    return long
