"""Held-out novel cell type (scDREAMER Suppl. Fig. 3), from tables/novel_type.tsv: the figure and
the report section. Each method trained without one cell type embeds it with the trained network
("held out"), then again after training on for a few epochs with it ("+k epochs"): does the type
stay a cluster of its own, away from the seen types, mixed across batches?"""

from __future__ import annotations

import html

import numpy as np
import pandas as pd
from plotnine import (
    aes,
    element_text,
    facet_grid,
    geom_hline,
    geom_line,
    geom_point,
    ggplot,
    labs,
    scale_shape_manual,
    theme,
    theme_bw,
)

from reports.figure_helpers import FAILED_COLOUR, figure_size, is_empty, ordered_categorical

SCORES = {"f1_own_cluster": "F1 as own cluster", "ari_own_cluster": "ARI as own cluster",
          "separation": "separation\n(centroid / spread)", "ilisi_novel": "iLISI of the type",
          "called_known": "called a known label"}
PHASE_HELD_OUT = "held out"


def phase(finetune_epochs: pd.Series) -> pd.Series:
    """"held out" (finetune 0) or "+k epochs" (trained on with the type)."""
    k = finetune_epochs.fillna(0).astype(int)
    return k.map(lambda e: PHASE_HELD_OUT if e == 0 else f"+{e} epochs")


def with_type_size(df: pd.DataFrame) -> pd.Series:
    """"Group1 (n = 31)": the held-out label with its number of cells, for facet titles."""
    sizes = df.groupby("novel_label")["n_novel"].max()
    return df["novel_label"].map(lambda t: f"{t} (n = {int(sizes[t])})" if pd.notna(sizes.get(t)) else str(t))


def novel_long(novel_type: pd.DataFrame) -> pd.DataFrame:
    """One row per run x score with the phase and the facet labels: ok runs with a value, and
    failed runs at 0 on every score (drawn as red crosses)."""
    runs = novel_type.copy()
    runs["status"] = runs["status"].astype(str)
    cols = [c for c in SCORES if c in runs.columns and runs.loc[runs["status"] == "ok", c].notna().any()]
    if not cols:
        return runs.iloc[0:0]
    runs["phase"] = phase(runs["finetune_epochs"])
    runs["held_out_type"] = with_type_size(runs)
    failed = runs["status"] != "ok"
    runs.loc[failed, [c for c in cols if c != "called_known"]] = 0.0  # called_known: supervised only
    long = runs.melt(id_vars=["dataset", "method", "seed", "status", "phase", "held_out_type"], value_vars=cols,
                     var_name="score").dropna(subset=["value"])
    long["score"] = ordered_categorical(long["score"].map(SCORES), [SCORES[c] for c in cols])
    long["method"] = ordered_categorical(long["method"])
    return long


def fig_novel_type(novel_type: pd.DataFrame):
    """Scores of the held-out type per method, held out vs after training on with it; None
    without novel-type runs."""
    if is_empty(novel_type):
        return None
    long = novel_long(novel_type)
    if long.empty:
        return None
    phases = sorted(long["phase"].unique(), key=lambda p: (p != PHASE_HELD_OUT, p))
    long["phase"] = pd.Categorical(long["phase"], categories=phases)
    long["run"] = long["method"].astype(str) + long["seed"].astype(str)
    n_cols = long.groupby("dataset")["held_out_type"].nunique().sum()
    n_methods = long["method"].nunique()
    reference = pd.DataFrame({"score": pd.Categorical([SCORES["separation"]], categories=long["score"].cat.categories,
                                                      ordered=True),
                              "y": [1.0]})
    reference = reference[reference["score"].isin(long["score"].unique())]
    ok = long[long["status"] == "ok"]
    plot = (ggplot(long, aes("method", "value"))
            + geom_line(ok, aes(group="run"), colour="#999999", size=0.4)
            + geom_point(ok, aes(shape="phase", fill="phase"), size=2.6, colour="black", stroke=0.3)
            + geom_point(long[long["status"] != "ok"], shape="x", colour=FAILED_COLOUR, size=3)
            + scale_shape_manual(values=["o", "^", "s", "D"][:len(phases)])
            + facet_grid("score ~ dataset + held_out_type", scales="free_y")
            + labs(x="", y="", shape="", fill="",
                   title="Held-out novel cell type: held out vs after training on with it")
            + theme_bw()
            + theme(axis_text_x=element_text(rotation=45, ha="right"), legend_position="bottom",
                    strip_text_y=element_text(size=7),
                    figure_size=figure_size(n_cols, long["score"].nunique(), col_w=min(0.3 * n_methods + 0.8, 4.5),
                                            row_h=1.6)))
    if not reference.empty:  # separation 1: as far from the seen types as their own cells spread
        plot = plot + geom_hline(reference, aes(yintercept="y"), linetype="dashed", colour="#d62728", size=0.4)
    return plot


def novel_summary(novel_type: pd.DataFrame) -> pd.DataFrame:
    """The table a user reads: per dataset x held-out type x method, each score held out and after
    training on (seed means), the change, and the seen type it lies nearest to."""
    long = novel_long(novel_type)
    long = long[long["status"] == "ok"]
    if long.empty:
        return pd.DataFrame()
    keys = ["dataset", "held_out_type", "method"]
    wide = long.pivot_table(index=keys, columns=["score", "phase"], values="value", aggfunc="mean", observed=True)
    wide.columns = [f"{s.splitlines()[0]}: {p}" for s, p in wide.columns]
    wide = wide[sorted(wide.columns, key=lambda c: (list(SCORES.values()).index(
        next(v for v in SCORES.values() if v.splitlines()[0] == c.split(": ")[0])), c.split(": ")[1] != PHASE_HELD_OUT))]
    ok = novel_type[(novel_type["status"].astype(str) == "ok") & (novel_type["finetune_epochs"].fillna(0) == 0)].copy()
    ok["held_out_type"] = with_type_size(ok)
    nearest = ok.groupby(keys)["nearest_type"].agg(lambda s: s.mode().iloc[0] if len(s) else "")
    out = wide.reset_index()
    out.insert(3, "nearest seen type (held out)", [nearest.get(tuple(r), "") for r in out[keys].to_numpy()])
    return out.round(3)


def novel_section_html(novel_type: pd.DataFrame | None, table_html) -> str:
    """The report's section: what was done, the summary table, failed runs named."""
    if is_empty(novel_type):
        return '<p class="nodata">no run held a cell type out (no novel_label in this study\'s settings)</p>'
    summary = novel_summary(novel_type)
    failed = novel_type[novel_type["status"].astype(str) != "ok"]
    failed_note = "" if failed.empty else (
        f'<p class="nodata">{len(failed)} run(s) failed: '
        + html.escape(", ".join(f"{m} {s}" for m, s in zip(failed["method"], failed["setting"]))) + "</p>")
    k = sorted(int(e) for e in np.unique(novel_type["finetune_epochs"].fillna(0)) if e > 0)
    intro = (
        "<p>Each method trained without one cell type (in every batch: no minibatch, cluster, triplet or "
        "label step saw its cells; supervised methods never had its label as a class) and embedded every "
        "cell with the trained network (<i>held out</i>); then, from the same first phase, trained on "
        f"every cell for {', '.join(map(str, k)) or 'no'} more epochs (<i>+k epochs</i>; the type stays unlabelled). "
        "<b>F1 / ARI as own cluster</b>: the Leiden cluster (scib-metrics' resolution grid) that best "
        "matches the type's cells; 1 = exactly one cluster of its own. <b>separation</b>: distance of "
        "its centroid to the nearest seen type's centroid over the seen types' spread (mean distance "
        "of a type's cells to their centroid, median over types); above 1 = farther away than a type's "
        "own cells spread. <b>iLISI of the type</b>: its cells' batch mixing (scib-metrics scale, 1 = "
        "fully mixed). <b>called a known label</b>: supervised methods' share of its cells predicted as a "
        "seen type (their classifiers are closed-set, so 1 by construction; which label is in "
        "novel_type.tsv, top_called_label). Methods without a trained network (Harmony, Scanorama, "
        "BBKNN, ComBat, Seurat, unintegrated) cannot embed cells they were not fitted on and are not "
        "part of this experiment.</p>")
    return intro + failed_note + table_html(summary, "table-novel-type")
