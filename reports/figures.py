"""The benchmark's figures, drawn with plotnine from the tables only.

Every ``fig_*`` function takes tables as pandas DataFrames, named like the tables of
``reports.tables.TABLE_FILES`` (``best``, ``scores``, ``runs``, ...), and returns a
``plotnine.ggplot`` or ``None`` when its inputs hold no data for it (the report then says
"no data for ..."), so figures fill in as methods land. Failed runs are drawn as failed (a
cross and/or a "failed" label) and appear in the plot's data with ``status == "failed"``,
never silently dropped.

Conventions taken from the tables: composite scores (bio, batch, overall) lie in [0, 1]
and higher is better; raw metric columns are oriented so that higher is better (the scIB
convention the metrics stage follows), which the across-method scaling below relies on.
"""

from __future__ import annotations

import textwrap
from collections.abc import Callable

import numpy as np
import pandas as pd
from plotnine import (
    aes,
    coord_flip,
    element_blank,
    element_text,
    facet_grid,
    facet_wrap,
    geom_boxplot,
    geom_col,
    geom_line,
    geom_point,
    geom_rect,
    geom_text,
    ggplot,
    guide_legend,
    guides,
    labs,
    position_dodge,
    scale_fill_cmap,
    scale_shape_manual,
    scale_size_continuous,
    scale_x_continuous,
    scale_y_continuous,
    theme,
    theme_bw,
)

from reports.figure_helpers import (
    BEST_FIXED,
    COMPOSITES,
    FAILED_COLOUR,
    STATUS_SHAPES,
    UMAP_COLUMNS,
    best_with_status,
    figure_size,
    find_columns,
    fully_labelled,
    is_empty,
    ordered_categorical,
    scale_min_max,
    with_run_status,
)
from reports.figures_claims import fig_claims
from reports.figures_scaling import fig_scaling
from reports.figures_sysvi import fig_sysvi_nmi_ilisi, fig_sysvi_sweep
from reports.figures_training import fig_convergence, fig_loss_terms, not_converged_best
from reports.label_transfer import fig_label_transfer
from reports.missing_labels import missing_label_long
from reports.novel_type import fig_novel_type
from reports.search import fig_search_trajectory
from reports.selection import selection_lines
from reports.tables import dataset_titles, metric_columns, metric_types

# ----------------------------------------------------------------------------- 1. summary table

def summary_long(best: pd.DataFrame, metrics: pd.DataFrame | None = None,
                 runs: pd.DataFrame | None = None) -> tuple[pd.DataFrame, list[tuple[str, str]]]:
    """Per method: metric values min-max scaled across methods within each dataset, then
    averaged over datasets; bio/batch/overall averaged over datasets. A dataset the method
    failed on counts as 0, the lowest scaled value, as in summary.tsv. Returns the long frame
    (method, column, kind circle|bar, value, status, error) and the ordered (column, group)."""
    b = best_with_status(best, runs)
    types = metric_types(metrics)
    mcols = metric_columns(best, BEST_FIXED)
    if types:
        mcols = ([c for c in mcols if types.get(c) == "bio"] + [c for c in mcols if types.get(c) == "batch"])
    ok = b[b["status"] == "ok"]
    zero = pd.Series(0.0, index=b.index[(b["status"] == "failed") & b["method"].isin(ok["method"])])
    counted = pd.concat([ok["method"], b.loc[zero.index, "method"]])
    rows = []
    for col in mcols:
        scaled = pd.concat([ok.groupby("dataset")[col].transform(scale_min_max), zero])
        means = scaled.groupby(counted).mean()
        rows += [{"method": m, "column": col, "kind": "circle", "value": v} for m, v in means.items()]
    for col in COMPOSITES:
        means = pd.concat([ok[col], zero]).groupby(counted).mean()
        rows += [{"method": m, "column": col, "kind": "bar", "value": v} for m, v in means.items()]
    long = pd.DataFrame(rows, columns=["method", "column", "kind", "value"])
    long["status"] = "ok"
    long["error"] = ""
    failed = b[~b["method"].isin(ok["method"])].groupby("method")["error"].first()
    if len(failed):
        long = pd.concat([long, pd.DataFrame({"method": failed.index, "column": "overall", "kind": "failed",
                                              "value": np.nan, "status": "failed",
                                              "error": failed.values})], ignore_index=True)
    groups = [(c, types.get(c, "metric")) for c in mcols] + [(c, "aggregate") for c in COMPOSITES]
    return long, groups


def fig_summary_table(best: pd.DataFrame, metrics: pd.DataFrame | None = None,
                      runs: pd.DataFrame | None = None, summary: pd.DataFrame | None = None,
                      batch_strength: pd.DataFrame | None = None):
    """scIB-style table: methods in summary.tsv's rank order (fewest failed datasets, then
    overall; by overall without it); one circle per metric (size and colour = value scaled
    across methods, mean over datasets); bars for bio, batch and overall. Methods whose runs
    all failed are listed at the bottom as failed, partial failures beside the method's name;
    the caption says how the best settings were chosen."""
    if is_empty(best):
        return None
    long, groups = summary_long(best, metrics, runs)
    if not is_empty(summary):
        # summary.tsv is the authoritative across-dataset aggregate (failed datasets counted): use its bars
        s = summary.set_index("method")
        bars = long["kind"] == "bar"
        long.loc[bars, "value"] = [s[c].get(m, v) for m, c, v in
                                   long.loc[bars, ["method", "column", "value"]].itertuples(index=False)]
    overall = long[(long["kind"] == "bar") & (long["column"] == "overall")].set_index("method")["value"]
    failed_methods = sorted(long.loc[long["kind"] == "failed", "method"])
    order = list(overall.sort_values(ascending=False).index)
    if not is_empty(summary) and "rank" in summary.columns:
        order = sorted(order, key=lambda m: summary.set_index("method")["rank"].get(m, np.inf))
    order += [m for m in failed_methods if m not in overall]
    n = len(order)
    y_of = {m: n - i for i, m in enumerate(order)}
    status = best_with_status(best, runs)
    partly_failed = status.query("status == 'failed'").groupby("method")["dataset"].apply(
        lambda d: f"{len(d)} of {status['dataset'].nunique()} datasets: {', '.join(sorted(d))}")
    y_labels = [m if m in failed_methods or m not in partly_failed else f"{m} (× failed on {partly_failed[m]})"
                for m in y_of]
    flagged = not_converged_best(best, runs)  # marker: the best setting has a run still learning
    y_labels = [f"{label} ⚠ not converged ({flagged[m]})" if m in flagged else label
                for m, label in zip(y_of, y_labels)]
    x_of: dict[str, float] = {}
    x = 0.0
    for i, (col, group) in enumerate(groups):
        if i and group != groups[i - 1][1]:
            x += 0.6  # a gap between the bio, batch and aggregate groups
        x_of[col] = x
        x += 1.0 if group != "aggregate" else 1.6
    long["x"] = long["column"].map(x_of)
    long["y"] = long["method"].map(y_of)
    long.loc[long["kind"] == "failed", "x"] = 0.0
    long["label"] = np.where(long["kind"] == "bar", long["value"].map(lambda v: f"{v:.2f}"),
                             "× failed: " + long["error"].fillna("").str.slice(0, 60))
    long["xmin"] = long["x"] - 0.7
    long["xmax"] = long["x"] - 0.7 + 1.4 * long["value"].fillna(0).clip(0, 1)
    long["ymin"] = long["y"] - 0.35
    long["ymax"] = long["y"] + 0.35
    header = pd.DataFrame([{"x": x_of[c], "y": n + 0.9, "text": g} for i, (c, g) in enumerate(groups)
                           if i == 0 or g != groups[i - 1][1]])
    width = 3.5 + 0.55 * len(groups) + (3.0 if failed_methods else 0.0)
    n_datasets = best["dataset"].nunique()
    ranked_by_failures = not is_empty(summary) and "n_failed_datasets" in summary.columns
    caption = textwrap.wrap("; ".join(selection_lines(best) + [
        "a failed dataset counts as 0" + ("; fewer failed datasets rank first" if ranked_by_failures else "")]),
        width=int(14 * width))
    p = (ggplot(long)
         + geom_point(aes("x", "y", size="value", fill="value"), data=lambda d: d[d["kind"] == "circle"],
                      shape="o", color="black", stroke=0.3)
         + geom_rect(aes(xmin="xmin", xmax="xmax", ymin="ymin", ymax="ymax", fill="value"),
                     data=lambda d: d[d["kind"] == "bar"], color="black", size=0.2)
         + geom_text(aes("xmax", "y", label="label"), data=lambda d: d[d["kind"] == "bar"], size=6,
                     ha="left", nudge_x=0.05)
         + geom_text(aes("x", "y", label="label"), data=lambda d: d[d["kind"] == "failed"], size=7,
                     ha="left", color=FAILED_COLOUR)
         + geom_text(aes("x", "y", label="text"), data=header, size=7, ha="left", fontweight="bold")
         + scale_fill_cmap("viridis", limits=(0, 1), name="scaled value")
         + scale_size_continuous(range=(1, 6), limits=(0, 1), guide=None)
         + scale_x_continuous(breaks=list(x_of.values()), labels=list(x_of.keys()), expand=(0, 0.8))
         + scale_y_continuous(breaks=list(y_of.values()), labels=y_labels, limits=(0.4, n + 1.2))
         + labs(x="", y="", title=f"Methods ranked by overall score (mean over {n_datasets} dataset(s))"
                + "".join(f"\n{t}" for t in dataset_titles(batch_strength, best["dataset"]).values()),
                caption="\n".join(caption))
         + theme_bw()
         + theme(figure_size=(width, 1.6 + 0.4 * n + 0.2 * len(caption)),
                 axis_text_x=element_text(rotation=45, ha="right"), panel_grid=element_blank(),
                 plot_caption=element_text(size=7, ha="left")))
    return p


# ----------------------------------------------------------------------------- 2. bio vs batch

def fig_bio_batch(best: pd.DataFrame, runs: pd.DataFrame | None = None,
                  batch_strength: pd.DataFrame | None = None):
    """Bio conservation vs batch correction of each method's best setting, one panel per
    dataset (on an unlabelled dataset the label-free proxy, best.tsv's bio_proxy, stands in for
    bio, marked "(proxy)"); methods whose runs failed are crosses at (0, 0) labelled "failed"."""
    if is_empty(best):
        return None
    b = best_with_status(best, runs)
    # unlabelled datasets have no bio score: their across-method overall used the label-free proxy
    proxy = b["bio"].isna() & b.get("bio_proxy", pd.Series(np.nan, index=b.index)).notna()
    b["x"] = b["batch"].where(b["status"] == "ok", 0.0)
    b["y"] = b["bio"].where(~proxy, b.get("bio_proxy")).where(b["status"] == "ok", 0.0)
    b["label"] = np.where(b["status"] == "ok", b["method"] + np.where(proxy, " (proxy)", ""),
                          "× " + b["method"] + " failed")
    b["dataset"] = b["dataset"].map(dataset_titles(batch_strength, b["dataset"]))
    n = b["dataset"].nunique()
    ncol = min(n, 3)
    p = (ggplot(b, aes("x", "y", color="method", shape="status"))
         + geom_point(size=3)
         + geom_text(aes(label="label"), data=lambda d: d[d["status"] == "ok"], size=7, nudge_y=0.035,
                     show_legend=False)
         + geom_text(aes(label="label"), data=lambda d: d[d["status"] == "failed"], size=7, nudge_y=0.035,
                     ha="left", color=FAILED_COLOUR, show_legend=False)
         + facet_wrap("~dataset", ncol=ncol)
         + scale_shape_manual(values=STATUS_SHAPES)
         + scale_x_continuous(limits=(-0.05, 1.15))
         + scale_y_continuous(limits=(-0.05, 1.1))
         + labs(x="batch correction (scaled)", shape="run status",
                y="bio conservation (scaled)" + ("\n(proxy): label-free proxy, dataset unlabelled" if proxy.any() else ""))
         + theme_bw()
         + theme(figure_size=figure_size(ncol, int(np.ceil(n / ncol)), 3.2, 3.0)))
    return p


# ----------------------------------------------------------------------------- 3. metric dots

def fig_metric_dots(best: pd.DataFrame, runs: pd.DataFrame | None = None):
    """Every raw metric (mean over seeds of the best setting) across datasets, one panel per
    metric; failed methods are crosses at the bottom of each panel."""
    if is_empty(best):
        return None
    mcols = [c for c in metric_columns(best, BEST_FIXED) if best[c].notna().any()]
    if not mcols:
        return None
    b = best_with_status(best, runs)
    long = b.melt(id_vars=["dataset", "method", "status"], value_vars=mcols, var_name="metric")
    floor = long[long["status"] == "ok"].groupby("metric")["value"].min().fillna(0.0)
    failed = long["status"] == "failed"
    long.loc[failed, "value"] = long.loc[failed, "metric"].map(floor).fillna(0.0)
    long = long[long["value"].notna()]
    if long.empty:
        return None
    n = len(mcols)
    ncol = min(n, 4)
    dodge = position_dodge(width=0.6)
    p = (ggplot(long, aes("dataset", "value", color="method", shape="status"))
         + geom_point(size=2.5, position=dodge)
         + facet_wrap("~metric", scales="free_y", ncol=ncol)
         + scale_shape_manual(values=STATUS_SHAPES)
         + labs(x="", y="metric value (best setting, mean over seeds)", shape="run status")
         + theme_bw()
         + theme(figure_size=figure_size(ncol, int(np.ceil(n / ncol)), 2.2, 2.3),
                 axis_text_x=element_text(rotation=30, ha="right")))
    return p


# ----------------------------------------------------------------------------- 4. sweeps

def fig_sweeps(scores: pd.DataFrame):
    """Hyperparameter sweeps: bio, batch and overall (within-method scaled) vs setting for
    each method with more than one setting; seeds as points, the mean over seeds as a line
    (one colour per dataset); failed runs are crosses at 0."""
    if is_empty(scores):
        return None
    s = with_run_status(fully_labelled(scores))
    n_settings = s.groupby("method")["setting"].nunique()
    s = s[s["method"].isin(n_settings[n_settings > 1].index)]
    if s.empty:
        return None
    long = s.melt(id_vars=["dataset", "method", "setting", "seed", "status"], value_vars=COMPOSITES,
                  var_name="score")
    long.loc[long["status"] == "failed", "value"] = 0.0
    long["setting"] = ordered_categorical(long["setting"])
    long["score"] = ordered_categorical(long["score"], COMPOSITES)
    means = (long[long["status"] == "ok"].groupby(["dataset", "method", "setting", "score"], observed=True)
             ["value"].mean().reset_index())
    n_panels = 3 * long["method"].nunique()
    ncol = min(n_panels, 6)  # a method's bio, batch and overall side by side, two methods a row
    p = (ggplot(long, aes("setting", "value", color="dataset"))
         + geom_point(aes(shape="status"), size=2, alpha=0.8)
         + geom_line(aes(group="dataset"), data=means)
         + facet_wrap(["method", "score"], ncol=ncol, scales="free_x")
         + scale_shape_manual(values=STATUS_SHAPES)
         + labs(x="setting", y="score (scaled within method)", shape="run status")
         + theme_bw()
         + theme(figure_size=figure_size(ncol, int(np.ceil(n_panels / ncol)), 1.6, 2.3, extra_w=1.8),
                 axis_text_x=element_text(rotation=45, ha="right", size=7), legend_position="bottom"))
    return p


# ----------------------------------------------------------------------------- 5. UMAP grids

def umap_figure(umap: pd.DataFrame, colour_by: str):
    """UMAP grid (datasets x methods) of representative runs coloured by ``colour_by``;
    a failed representative run is an empty panel reading "failed"."""
    if is_empty(umap):
        return None
    u = with_run_status(umap)
    ok = u[u["status"] == "ok"]
    failed = u[u["status"] == "failed"].drop_duplicates(["dataset", "method"]).copy()
    failed["x"], failed["y"] = 0.0, 0.0
    failed["text"] = "× failed"
    data = pd.concat([ok.assign(text=""), failed], ignore_index=True)
    data[colour_by] = data[colour_by].astype(str)
    point_size = 0.3 if len(ok) > 2000 else 0.8
    # one panel per dataset x method, wrapped at UMAP_COLUMNS (a datasets x methods grid of a
    # full study is 20 panels wide and unreadable at the report's width)
    data["panel"] = data["method"] + "\n" + data["dataset"]
    order = data.sort_values(["dataset", "method"])["panel"].drop_duplicates()
    data["panel"] = pd.Categorical(data["panel"], categories=list(order))
    n_panels = len(order)
    ncol = min(n_panels, UMAP_COLUMNS)
    n_levels = ok[colour_by].nunique()
    p = (ggplot(data, aes("x", "y"))
         + geom_point(aes(color=colour_by), data=lambda d: d[d["status"] == "ok"], size=point_size, alpha=0.6,
                      stroke=0)
         + geom_text(aes(label="text"), data=lambda d: d[d["status"] == "failed"], color=FAILED_COLOUR, size=10)
         + facet_wrap("~panel", scales="free", ncol=ncol)
         + guides(color=guide_legend(override_aes={"size": 3, "alpha": 1},
                                     ncol=1 if n_levels <= 20 else 2))
         + labs(x="UMAP 1", y="UMAP 2", color=colour_by)
         + theme_bw()
         + theme(figure_size=figure_size(ncol, int(np.ceil(n_panels / ncol)), 1.6, 1.6, extra_w=2.0),
                 axis_text=element_blank(), axis_ticks=element_blank(), panel_grid=element_blank()))
    return p


def fig_umap_batch(umap: pd.DataFrame):
    """UMAP of each method's representative run coloured by batch."""
    return umap_figure(umap, "batch")


def fig_umap_label(umap: pd.DataFrame):
    """UMAP of each method's representative run coloured by cell type."""
    return umap_figure(umap, "label")


# ----------------------------------------------------------------------------- 6. positives, LISI

def fig_positive_rates(best: pd.DataFrame, runs: pd.DataFrame | None = None):
    """Positive and true-positive rates (iMAP metric of scDREAMER/scCRAFT) of each method's
    best setting as bars per dataset; failed methods get a "failed" label at zero."""
    if is_empty(best):
        return None
    cols = find_columns(best, r"positive")
    if not cols:
        return None
    b = best_with_status(best, runs)
    long = b.melt(id_vars=["dataset", "method", "status"], value_vars=cols, var_name="rate")
    long.loc[long["status"] == "failed", "value"] = 0.0
    long = long[long["value"].notna()].copy()
    if long.empty:
        return None
    long["rate"] = ordered_categorical(long["rate"], cols)
    long["text"] = np.where(long["status"] == "failed", "×failed", "")
    n = long["dataset"].nunique()
    n_methods = long["method"].nunique()
    dodge = position_dodge(width=0.8)
    p = (ggplot(long, aes("method", "value", fill="rate"))
         + geom_col(position=dodge, width=0.75)
         + geom_text(aes(label="text"), data=lambda d: d[d["status"] == "failed"].drop_duplicates(
             ["dataset", "method"]), y=0.04, color=FAILED_COLOUR, size=7, angle=90, va="bottom")
         + facet_wrap("~dataset", ncol=min(n, 3), scales="free_x")
         + scale_y_continuous(limits=(0, 1.05))
         + coord_flip()  # methods down the page: the figure keeps the report's width with many methods
         + labs(x="", y="rate (best setting, mean over seeds)", fill="")
         + theme_bw()
         + theme(figure_size=figure_size(min(n, 3), int(np.ceil(n / 3)), 2.8, 0.22 * n_methods + 0.8),
                 legend_position="bottom"))
    return p


def fig_lisi_boxplots(lisi_percell: pd.DataFrame, best: pd.DataFrame | None = None,
                      runs: pd.DataFrame | None = None):
    """Per-cell iLISI and cLISI of the representative runs as box plots (rows: metric,
    columns: dataset); methods whose runs failed are marked "failed" on the axis."""
    if is_empty(lisi_percell):
        return None
    long = lisi_percell.copy()
    long["status"] = "ok"
    if not is_empty(best):
        b = best_with_status(best, runs)
        failed = b[b["status"] == "failed"]
        if len(failed):
            metrics = sorted(long["metric"].unique())
            fails = pd.DataFrame([{"dataset": d, "method": m, "metric": k, "value": np.nan, "status": "failed"}
                                  for d, m in failed[["dataset", "method"]].itertuples(index=False)
                                  for k in metrics])
            long = pd.concat([long, fails], ignore_index=True)
    long["text_y"] = long.groupby("metric")["value"].transform("min").fillna(1.0)
    n_datasets, n_methods = long["dataset"].nunique(), long["method"].nunique()
    p = (ggplot(long, aes("method", "value", fill="method"))
         + geom_boxplot(data=lambda d: d[d["status"] == "ok"], outlier_size=0.3, outlier_alpha=0.3,
                        show_legend=False)
         + geom_text(aes(y="text_y", label="status"), data=lambda d: d[d["status"] == "failed"].drop_duplicates(
             ["dataset", "method", "metric"]), color=FAILED_COLOUR, size=8, va="bottom")
         + facet_grid("dataset ~ metric", scales="free")
         + coord_flip()  # methods down the page: the figure keeps the report's width with many methods
         + labs(x="", y="per-cell LISI (representative run)")
         + theme_bw()
         + theme(figure_size=figure_size(2, n_datasets, 3.5, 0.22 * n_methods + 0.6, extra_w=1.5)))
    return p


# ----------------------------------------------------------------------------- 7. scaling: figures_scaling.py

# ----------------------------------------------------------------------------- 8. missing labels

def fig_missing_labels(scores: pd.DataFrame, best: pd.DataFrame | None = None,
                       metrics: pd.DataFrame | None = None):
    """Supervised methods with hidden labels (reports/missing_labels.py): macro-F1 of the hidden
    cells, raw NMI, ARI, iLISI and a composite scaled over all supervised runs of the dataset,
    vs the share of labels missing; seeds as points, mean as a line; failed runs crosses at 0."""
    if is_empty(scores):
        return None
    long = missing_label_long(scores, best, metric_types(metrics))
    long.loc[long["status"] == "failed", "value"] = 0.0
    long = long[long["value"].notna()].copy()
    if long.empty:
        return None
    labels = list(dict.fromkeys(long["score"]))
    long["score"] = ordered_categorical(long["score"], labels)
    means = (long[long["status"] == "ok"].groupby(["dataset", "method", "label_missing", "score"], observed=True)
             ["value"].mean().reset_index())
    shares = sorted(long["label_missing"].unique())
    pad = 0.05 * max(shares[-1] - shares[0], 0.1)
    dodge = position_dodge(width=pad)
    n_datasets = long["dataset"].nunique()
    p = (ggplot(long, aes("label_missing", "value", color="method", group="method"))
         + geom_point(aes(shape="status"), size=2, alpha=0.8, position=dodge)
         + geom_line(data=means, position=dodge)
         + facet_grid("score ~ dataset", scales="free_y")
         + scale_shape_manual(values=STATUS_SHAPES)
         + scale_x_continuous(breaks=shares, labels=[f"{x:.0%}" for x in shares],
                              limits=(shares[0] - pad, shares[-1] + pad))
         + labs(x="share of labels missing (best setting of each method)", y="", shape="run status")
         + theme_bw()
         + theme(figure_size=figure_size(max(n_datasets, 2), len(labels), 3.0, 1.9)))
    return p


# ----------------------------------------------------------------------------- the catalogue

# name -> (function, description). Names are stable file stems (FIGDIR/<name>.png/.pdf)
# that the Snakefile registers with report(); captions live in reports/rst/<name>.rst.
FIGURES: dict[str, tuple[Callable, str]] = {
    "summary_table": (fig_summary_table, "scIB-style summary: methods ranked, circles per metric, bars for "
                                         "bio / batch / overall"),
    "bio_batch": (fig_bio_batch, "Bio conservation vs batch correction per dataset"),
    "metric_dots": (fig_metric_dots, "Each metric across datasets (best setting per method)"),
    "sweeps": (fig_sweeps, "Hyperparameter sweeps: composite scores vs setting, seeds as points, mean line"),
    "sysvi_sweep": (fig_sysvi_sweep, "sysVI family: scaled NMI-fixed and iLISI vs setting (sysVI Fig. 2a)"),
    "sysvi_nmi_ilisi": (fig_sysvi_nmi_ilisi, "sysVI family: NMI-fixed vs iLISI per model (sysVI Fig. 3)"),
    "umap_batch": (fig_umap_batch, "UMAP of representative runs coloured by batch"),
    "umap_label": (fig_umap_label, "UMAP of representative runs coloured by cell type"),
    "positive_rates": (fig_positive_rates, "Positive and true-positive rates per method"),
    "lisi_boxplots": (fig_lisi_boxplots, "Per-cell iLISI and cLISI of representative runs"),
    "scaling": (fig_scaling, "Runtime and peak memory vs number of cells (log-log), CPU and GPU"),
    "missing_labels": (fig_missing_labels, "Supervised methods with hidden labels: macro-F1, NMI, ARI, iLISI and "
                                           "a composite scaled over all supervised runs, vs share of labels missing"),
    "convergence": (fig_convergence, "Training: reconstruction loss per epoch of every trained run, "
                                     "not-converged runs in red"),
    "claims": (fig_claims, "The papers' claims: per comparison, each seed's value of both sides (claim_tests.tsv)"),
    "label_transfer": (fig_label_transfer, "Cross-modality label transfer: accuracy and macro-F1 per method and "
                                           "target modality (DAVAE's task)"),
    "novel_type": (fig_novel_type, "Held-out novel cell type: own-cluster F1/ARI, separation, iLISI, held out "
                                   "vs after training on with it (novel_type.tsv)"),
    "loss_terms": (fig_loss_terms, "Training: every loss term per epoch of each method's representative run"),
    "search_trajectory": (fig_search_trajectory, "Adaptive search vs grid: best fixed score after n runs"),
}
