"""The sysVI paper's figures (Fig. 2a and Fig. 3) over the sysVI-family ablations (cvae, vamp,
cyc, sysvi, adv), from scores.tsv."""

from __future__ import annotations

import pandas as pd
from plotnine import (
    aes,
    element_text,
    facet_grid,
    geom_line,
    geom_point,
    geom_text,
    ggplot,
    labs,
    scale_shape_manual,
    theme,
    theme_bw,
)

from reports.figure_helpers import (
    FAILED_COLOUR,
    STATUS_SHAPES,
    figure_size,
    fully_labelled,
    is_empty,
    ordered_categorical,
    scale_min_max,
    with_run_status,
)

SYSVI_FAMILY = ["cvae", "vamp", "cyc", "sysvi", "adv"]  # registry names of the sysVI ablations


def sysvi_rows(scores: pd.DataFrame) -> pd.DataFrame:
    """Fully labelled runs of the sysVI family methods present in ``scores``."""
    s = with_run_status(fully_labelled(scores))
    return s[s["method"].isin(SYSVI_FAMILY)]


def fig_sysvi_sweep(scores: pd.DataFrame):
    """sysVI Fig. 2a: NMI-fixed and iLISI, each min-max scaled to [0, 1] per dataset over all
    sysVI-family runs, vs the setting (e.g. KL weight); seeds as points, average as a line."""
    if is_empty(scores) or not {"nmi_fixed", "ilisi"} <= set(scores.columns):
        return None
    s = sysvi_rows(scores)
    if s.empty:
        return None
    long = s.melt(id_vars=["dataset", "method", "setting", "seed", "status"], value_vars=["nmi_fixed", "ilisi"],
                  var_name="metric")
    long["value"] = long.groupby(["dataset", "metric"])["value"].transform(scale_min_max)
    long.loc[long["status"] == "failed", "value"] = 0.0
    long = long[long["value"].notna()]
    if long.empty:
        return None
    long["setting"] = ordered_categorical(long["setting"])
    long["method"] = ordered_categorical(long["method"], [m for m in SYSVI_FAMILY if m in set(long["method"])])
    means = (long[long["status"] == "ok"].groupby(["dataset", "method", "setting", "metric"], observed=True)
             ["value"].mean().reset_index())
    n_methods, n_datasets = long["method"].nunique(), long["dataset"].nunique()
    p = (ggplot(long, aes("setting", "value", color="metric"))
         + geom_point(aes(shape="status"), size=2, alpha=0.8)
         + geom_line(aes(group="metric"), data=means)
         + facet_grid("dataset ~ method", scales="free_x")
         + scale_shape_manual(values=STATUS_SHAPES)
         + labs(x="setting", y="scaled score\n(0-1 per metric)", color="metric (avg. = line)",
                shape="run status")
         + theme_bw()
         + theme(figure_size=figure_size(n_methods, n_datasets, 1.9, 2.4, extra_w=1.2),
                 axis_text_x=element_text(rotation=45, ha="right"), legend_position="bottom"))
    return p


def fig_sysvi_nmi_ilisi(scores: pd.DataFrame):
    """sysVI Fig. 3: NMI-fixed vs iLISI per model (panels); seeds as small circles, the
    average per setting as a cross, coloured by setting; failed runs counted in a red label."""
    if is_empty(scores) or not {"nmi_fixed", "ilisi"} <= set(scores.columns):
        return None
    s = sysvi_rows(scores)
    if s.empty:
        return None
    s = s[["dataset", "method", "setting", "seed", "status", "nmi_fixed", "ilisi"]].copy()
    s["setting"] = ordered_categorical(s["setting"])
    s["method"] = ordered_categorical(s["method"], [m for m in SYSVI_FAMILY if m in set(s["method"])])
    s["kind"] = "seed"
    ok = s[s["status"] == "ok"]
    means = ok.groupby(["dataset", "method", "setting"], observed=True)[["nmi_fixed", "ilisi"]].mean().reset_index()
    means["kind"] = "average"
    means["status"] = "ok"
    failed = (s[s["status"] == "failed"].groupby(["dataset", "method"], observed=True).size()
              .rename("n").reset_index())
    failed["label"] = failed["n"].map(lambda k: f"× {k} failed run(s)")
    failed["ilisi"] = ok["ilisi"].min() if len(ok) else 0.0
    failed["nmi_fixed"] = ok["nmi_fixed"].min() if len(ok) else 0.0
    failed["status"] = "failed"
    data = pd.concat([s, means, failed.assign(kind="failed")], ignore_index=True)
    n_methods, n_datasets = s["method"].nunique(), s["dataset"].nunique()
    p = (ggplot(data, aes("ilisi", "nmi_fixed"))
         + geom_point(aes(color="setting"), data=lambda d: d[(d["kind"] == "seed") & (d["status"] == "ok")],
                      size=1.5, alpha=0.7)
         + geom_point(aes(color="setting"), data=lambda d: d[d["kind"] == "average"], shape="x", size=4,
                      stroke=1.2)
         + geom_text(aes(label="label"), data=lambda d: d[d["kind"] == "failed"], color=FAILED_COLOUR,
                     size=7, ha="left", va="bottom")
         + facet_grid("dataset ~ method")
         + labs(x="iLISI (batch correction)", y="NMI fixed (bio conservation)",
                color="setting (× = average)")
         + theme_bw()
         + theme(figure_size=figure_size(n_methods, n_datasets, 1.9, 2.2, extra_w=1.2),
                 axis_text_x=element_text(rotation=45, ha="right"), legend_position="bottom"))
    return p
