"""Training figures: loss curves and the convergence flag.

Drawn from tables only: ``loss_history`` (tables/loss_history.tsv.gz, one row per run x term
x epoch) and ``runs`` (runs.tsv with the ``converged`` column the aggregate step derives from
the same histories; its rule is stated in the report and README).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from plotnine import (
    aes,
    element_text,
    facet_wrap,
    geom_line,
    ggplot,
    labs,
    scale_color_manual,
    scale_size_manual,
    theme,
    theme_bw,
)

MAX_COLUMNS = 6  # panels per row: the report is ~1400 px wide
CONVERGENCE_COLOURS = {"yes": "#1f77b4", "no": "#d62728", "not assessable": "#999999"}


def is_empty(df: pd.DataFrame | None) -> bool:
    return df is None or len(df) == 0


def wrap_size(n_panels: int, col_w: float = 1.6, row_h: float = 1.6) -> tuple[float, float]:
    """Figure size of a facet_wrap with at most MAX_COLUMNS columns."""
    ncol = min(max(n_panels, 1), MAX_COLUMNS)
    nrow = int(np.ceil(max(n_panels, 1) / ncol))
    return 1.8 + col_w * ncol, 1.0 + row_h * nrow


def with_convergence(history: pd.DataFrame, runs: pd.DataFrame | None) -> pd.DataFrame:
    """loss_history rows with runs.tsv's ``converged`` and ``learned`` status of their run (fully
    labelled runs)."""
    h = history.copy()
    if "label_missing" in h.columns:
        h = h[h["label_missing"].fillna(0) == 0]
    keys = ["dataset", "method", "setting", "seed"]
    status = [c for c in ("converged", "learned") if not is_empty(runs) and c in runs.columns]
    if status:
        h = h.merge(runs[keys + status].drop_duplicates(keys), on=keys, how="left")
    for c in ("converged", "learned"):
        h[c] = h[c].fillna("not assessable") if c in h.columns else "not assessable"
    return h


def fig_convergence(loss_history: pd.DataFrame, runs: pd.DataFrame | None = None):
    """The reconstruction loss per epoch of every trained run (fully labelled), one panel per
    method and dataset, one line per setting x seed, red where the run is flagged "not
    converged" (its last tenth of epochs still gained more than 4 % of its total improvement, or
    it is too short to judge; metrics/convergence.py); each panel counts those and the runs that
    did not learn."""
    if is_empty(loss_history):
        return None
    h = loss_history[loss_history["reconstruction"].astype(str).str.lower() == "true"]
    h = with_convergence(h, runs)
    if h.empty:
        return None
    h["run"] = h["setting"].astype(str) + " seed " + h["seed"].astype(str)
    h["status"] = "ok"
    h = pd.concat([h, failed_run_rows(h, runs)], ignore_index=True)
    flagged = h[h["converged"] == "no"].groupby(["dataset", "method"])["run"].nunique()
    untrained = h[h["learned"] == "no"].groupby(["dataset", "method"])["run"].nunique()
    totals = h[h["status"] == "ok"].groupby(["dataset", "method"])["run"].nunique()
    n_failed = h[h["status"] == "failed"].groupby(["dataset", "method"])["run"].nunique()
    h["panel"] = [f"{m} · {d}" + "".join(
        f"\n{counts[(d, m)]} {what}" for counts, what in ((flagged, f"of {totals.get((d, m), 0)} not converged"),
                                                          (untrained, "did not learn"),
                                                          (n_failed, "failed run(s) ×")) if (d, m) in counts.index)
        for d, m in zip(h["dataset"], h["method"])]
    h["panel"] = pd.Categorical(h["panel"], categories=sorted(h["panel"].unique()))
    h["converged"] = pd.Categorical(h["converged"], categories=list(CONVERGENCE_COLOURS))
    n_panels = h["panel"].nunique()
    p = (ggplot(h, aes("epoch", "value", group="run", color="converged"))
         + geom_line(data=lambda d: d[d["status"] == "ok"], size=0.5, alpha=0.8)
         + facet_wrap("~panel", scales="free", ncol=min(n_panels, MAX_COLUMNS))
         + scale_color_manual(values=CONVERGENCE_COLOURS, drop=False)
         + labs(x="epoch", y="reconstruction loss (epoch mean)", color="converged",
                title="Reconstruction loss of every trained run (red: still falling at the end, or too short)")
         + theme_bw()
         + theme(figure_size=wrap_size(n_panels), strip_text=element_text(size=7),
                 axis_text=element_text(size=6), legend_position="bottom"))
    return p


def failed_run_rows(history: pd.DataFrame, runs: pd.DataFrame | None) -> pd.DataFrame:
    """One row (status failed, no values) per failed fully labelled run of a dataset x method that
    has loss curves, so each panel counts its failed runs."""
    if is_empty(runs) or "status" not in runs.columns:
        return history.iloc[0:0]
    trained = set(zip(history["dataset"], history["method"]))
    r = runs[runs["status"] == "failed"]
    if "label_missing" in r.columns:
        r = r[r["label_missing"].fillna(0) == 0]
    r = r.loc[np.array([(d, m) in trained for d, m in zip(r["dataset"], r["method"])], dtype=bool)]
    return pd.DataFrame({"dataset": r["dataset"], "method": r["method"], "setting": r["setting"],
                         "seed": r["seed"], "epoch": np.nan, "value": np.nan, "converged": "not assessable",
                         "learned": "not assessable",
                         "status": "failed", "run": r["setting"].astype(str) + " seed " + r["seed"].astype(str)})


def not_converged_best(best: pd.DataFrame | None, runs: pd.DataFrame | None) -> dict[str, str]:
    """method -> datasets (joined) where a fully labelled run of its best setting is flagged not converged."""
    if is_empty(best) or is_empty(runs) or "converged" not in runs.columns:
        return {}
    r = runs[runs["converged"] == "no"]
    if "label_missing" in r.columns:
        r = r[r["label_missing"].fillna(0) == 0]
    chosen = set(zip(best["dataset"], best["method"], best["best_setting"]))
    hit = r[np.array([(d, m, s) in chosen for d, m, s in zip(r["dataset"], r["method"], r["setting"])], dtype=bool)]
    return {m: ", ".join(sorted(g["dataset"].unique())) for m, g in hit.groupby("method")}


def representative_runs(best: pd.DataFrame | None) -> set[tuple]:
    """(dataset, method, setting, seed) of each dataset x method's representative run."""
    if is_empty(best) or "representative_seed" not in best.columns:
        return set()
    b = best.dropna(subset=["best_setting", "representative_seed"])
    return {(d, m, s, int(seed)) for d, m, s, seed in
            b[["dataset", "method", "best_setting", "representative_seed"]].itertuples(index=False)}


def failed_methods(best: pd.DataFrame | None, trained: set[str]) -> dict[str, str]:
    """method -> datasets (joined) where every run of a trained method failed (no best setting)."""
    if is_empty(best):
        return {}
    b = best[best["best_setting"].isna() & best["method"].isin(trained)]
    return {m: ", ".join(sorted(g["dataset"])) for m, g in b.groupby("method")}


def fig_loss_terms(loss_history: pd.DataFrame, best: pd.DataFrame | None = None):
    """Every loss term per epoch of each method's representative run: one panel per method and
    term (own y scale), one line per dataset; the reconstruction term's panel title is marked."""
    if is_empty(loss_history):
        return None
    h = loss_history.copy()
    reps = representative_runs(best)
    if reps:
        keep = [(d, m, s, int(seed)) in reps for d, m, s, seed in
                h[["dataset", "method", "setting", "seed"]].itertuples(index=False)]
        h = h[keep]
    if h.empty:
        return None
    # a term constant in every run (scvi-tools' kl_global with no global latent) tells nothing
    spread = h.groupby(["method", "term"])["value"].transform(lambda v: v.max() - v.min())
    h = h[spread > 0].copy()
    if h.empty:
        return None
    h["status"] = "ok"
    h["kind"] = np.where(h["reconstruction"].astype(str).str.lower() == "true", "reconstruction", "other")
    h["panel"] = h["method"] + ": " + h["term"] + np.where(h["kind"] == "reconstruction", " (recon.)", "")
    failed = failed_methods(best, set(h["method"]))
    if failed:  # a dataset where every run of the method failed: said in each of its panels
        h["panel"] = [f"{p}\n× failed on {failed[m]}" if m in failed else p for p, m in zip(h["panel"], h["method"])]
        h = pd.concat([h, pd.DataFrame([{"method": m, "dataset": d, "status": "failed", "panel": p}
                                         for p, m in h[["panel", "method"]].drop_duplicates().itertuples(index=False)
                                         if m in failed for d in failed[m].split(", ")])], ignore_index=True)
    # per method: the reconstruction term first, then the others alphabetically
    order = (h[h["status"] == "ok"].drop_duplicates("panel")
             .assign(other=lambda d: d["kind"] != "reconstruction")
             .sort_values(["method", "other", "term"])["panel"])
    h["panel"] = pd.Categorical(h["panel"], categories=list(order))
    h["line"] = h["dataset"].astype(str)
    n_panels = len(order)
    p = (ggplot(h, aes("epoch", "value", color="dataset", group="line"))
         + geom_line(aes(size="kind"), data=lambda d: d[d["status"] == "ok"])
         + facet_wrap("~panel", scales="free", ncol=min(n_panels, MAX_COLUMNS))
         + scale_size_manual(values={"reconstruction": 1.0, "other": 0.5}, guide=None)
         + labs(x="epoch", y="loss term (epoch mean)", color="dataset",
                title="Loss terms of each method's representative run")
         + theme_bw()
         + theme(figure_size=wrap_size(n_panels, 1.6, 1.4), strip_text=element_text(size=6.5),
                 axis_text=element_text(size=6), legend_position="bottom"))
    return p
