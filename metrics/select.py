"""Scaling, composites and best-setting selection (design.md section 6). Pure pandas.

Within a method (per dataset): each metric is min-max scaled across that method's runs (all
settings and seeds); bio = mean of scaled bio metrics, batch = mean of scaled batch metrics,
overall = w*bio + (1-w)*batch with w = 0.6. The best setting has the highest mean overall over
seeds; settings where some seed failed rank below settings where none did. The representative
run is the seed whose overall is the median of the best setting's seeds (the lower middle
one for an even count). Across methods (per dataset): each method's best setting (metric
means over its seeds) is min-max scaled across methods, with the same composite; the overall
across datasets is the mean. Raw values are kept beside scaled ones. scDREAMER's 50/50
composite is reported as a second view. With criterion "unsupervised", the within-method
choice uses the label-free proxy (scCRAFT's per-batch cluster conservation) instead.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

RUN_KEYS = ["dataset", "method", "setting", "seed"]
UNSUPERVISED_PROXY = ["batch_cluster_nmi", "batch_cluster_ari"]


def minmax(values: pd.Series, higher_is_better: bool = True) -> pd.Series:
    """Scale to [0, 1]; NaN stays NaN; a constant column becomes 0.5 (no information)."""
    v = values.astype(float)
    lo, hi = v.min(skipna=True), v.max(skipna=True)
    if not np.isfinite(lo) or not np.isfinite(hi):
        return v * np.nan
    if hi == lo:
        out = v * 0 + 0.5
    else:
        out = (v - lo) / (hi - lo)
    return out if higher_is_better else 1 - out


def composite(scaled: pd.DataFrame, bio: list[str], batch: list[str], bio_weight: float = 0.6) -> pd.DataFrame:
    """bio, batch and overall columns from scaled metric columns (missing metrics ignored)."""
    bio_cols = [m for m in bio if m in scaled]
    batch_cols = [m for m in batch if m in scaled]
    out = pd.DataFrame(index=scaled.index)
    out["bio"] = scaled[bio_cols].mean(axis=1, skipna=True) if bio_cols else np.nan
    out["batch"] = scaled[batch_cols].mean(axis=1, skipna=True) if batch_cols else np.nan
    if bio_cols and batch_cols:
        out["overall"] = bio_weight * out["bio"] + (1 - bio_weight) * out["batch"]
    else:  # unlabelled data: no bio metrics, the batch score alone (and vice versa)
        out["overall"] = out["bio"] if bio_cols else out["batch"]
    out["combined_5050"] = 0.5 * out["bio"] + 0.5 * out["batch"]
    return out


def _scale_block(block: pd.DataFrame, metrics: list[str], direction: dict[str, bool]) -> pd.DataFrame:
    ok = block["status"] == "ok"
    scaled = pd.DataFrame(index=block.index)
    for m in metrics:
        col = block[m].where(ok)
        scaled[m] = minmax(col, direction.get(m, True))
    return scaled


def score_runs(wide: pd.DataFrame, bio: list[str], batch: list[str], direction: dict[str, bool] | None = None,
               bio_weight: float = 0.6) -> pd.DataFrame:
    """Per run: within-method scaled metrics and composites (scores.tsv)."""
    direction = direction or {}
    metrics = [m for m in wide.columns if m not in RUN_KEYS + ["label_missing", "status", "error"]]
    parts = []
    for _, block in wide.groupby(["dataset", "method"], sort=False):
        scaled = _scale_block(block, metrics, direction)
        comp = composite(scaled, bio, batch, bio_weight)
        for m in UNSUPERVISED_PROXY:
            if m in scaled:
                comp[f"proxy_{m}"] = scaled[m]
        proxy_cols = [c for c in comp if c.startswith("proxy_")]
        comp["unsupervised"] = comp[proxy_cols].mean(axis=1) if proxy_cols else np.nan
        parts.append(pd.concat([block, comp, scaled.add_prefix("scaled_")], axis=1))
    out = pd.concat(parts) if parts else wide.assign(bio=[], batch=[], overall=[])
    return out


def select_best(scores: pd.DataFrame, criterion: str = "composite") -> pd.DataFrame:
    """One row per dataset x method: best setting, representative seed, within-method score."""
    key = "overall" if criterion == "composite" else "unsupervised"
    rows = []
    base = scores[scores.get("label_missing", 0).fillna(0) == 0] if "label_missing" in scores else scores
    for (dataset, method), block in base.groupby(["dataset", "method"], sort=False):
        stats = []
        for setting, sblock in block.groupby("setting", sort=False):
            ok = sblock[sblock["status"] == "ok"]
            stats.append({
                "setting": setting, "n_seeds": len(sblock), "n_failed": int((sblock["status"] != "ok").sum()),
                "mean": ok[key].mean() if len(ok) else np.nan,
            })
        st = pd.DataFrame(stats)
        st["selectable"] = st["mean"].notna()
        st = st.sort_values(["selectable", "n_failed", "mean", "setting"],
                            ascending=[False, True, False, True], kind="mergesort")
        best = st.iloc[0]
        row = {"dataset": dataset, "method": method, "best_setting": best["setting"],
               "n_seeds": int(best["n_seeds"]), "n_failed": int(block["status"].ne("ok").sum()),
               "within_overall": best["mean"], "representative_seed": np.nan}
        ok = block[(block["setting"] == best["setting"]) & (block["status"] == "ok")].sort_values("seed")
        if len(ok):
            vals = ok[key].to_numpy()
            med = np.sort(vals)[(len(vals) - 1) // 2]
            rep = ok.iloc[int(np.flatnonzero(vals == med)[0])]
            row["representative_seed"] = int(rep["seed"])
        rows.append(row)
    return pd.DataFrame(rows)


def across_methods(scores: pd.DataFrame, best: pd.DataFrame, metrics: list[str], bio: list[str],
                   batch: list[str], direction: dict[str, bool] | None = None,
                   bio_weight: float = 0.6) -> pd.DataFrame:
    """Each method's best setting (raw metric means over ok seeds), scaled across methods."""
    direction = direction or {}
    rows = []
    for _, b in best.iterrows():
        sel = scores[(scores["dataset"] == b["dataset"]) & (scores["method"] == b["method"])
                     & (scores["setting"] == b["best_setting"]) & (scores["status"] == "ok")]
        if "label_missing" in sel:
            sel = sel[sel["label_missing"].fillna(0) == 0]
        rows.append({**b.to_dict(), **{m: sel[m].mean() if len(sel) else np.nan for m in metrics}})
    table = pd.DataFrame(rows)
    if table.empty:
        return table
    parts = []
    for _, block in table.groupby("dataset", sort=False):
        scaled = pd.DataFrame({m: minmax(block[m], direction.get(m, True)) for m in metrics}, index=block.index)
        comp = composite(scaled, bio, batch, bio_weight)
        block = pd.concat([block, comp, scaled.add_prefix("scaled_")], axis=1)
        block["rank"] = block["overall"].rank(ascending=False, method="min", na_option="bottom").astype(int)
        parts.append(block)
    return pd.concat(parts).sort_values(["dataset", "rank"])


def summarize(best: pd.DataFrame) -> pd.DataFrame:
    """Per method: mean over datasets of the across-method scores, ranked."""
    if best.empty:
        return pd.DataFrame(columns=["method", "overall", "bio", "batch", "rank", "n_datasets"])
    out = best.groupby("method").agg(overall=("overall", "mean"), bio=("bio", "mean"),
                                     batch=("batch", "mean"), n_datasets=("dataset", "nunique")).reset_index()
    out["rank"] = out["overall"].rank(ascending=False, method="min", na_option="bottom").astype(int)
    return out.sort_values("rank")


def fit_exponent(n: np.ndarray, y: np.ndarray) -> float:
    """Slope of log(y) on log(n): the empirical scaling exponent (NaN with < 2 sizes)."""
    n, y = np.asarray(n, float), np.asarray(y, float)
    keep = (n > 0) & (y > 0) & np.isfinite(y)
    if np.unique(n[keep]).size < 2:
        return float("nan")
    return float(np.polyfit(np.log(n[keep]), np.log(y[keep]), 1)[0])
