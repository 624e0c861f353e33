"""Scaling figure, from scaling.tsv only.

The runtime that scales with the data is the method's own integration time (``integrate_s``
of the run record); the rest of a job's wall-clock (``startup_s``: imports, reading the data,
writing the run file) is drawn in its own panel, because on small subsamples it dominates
the wall-clock and flattens any fitted slope towards 0. Exponents are log-log slopes per
method over its successful sizes; a method whose sizes span less than 10x is marked, since
such a slope says little.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from plotnine import (
    aes,
    facet_wrap,
    geom_line,
    geom_point,
    geom_text,
    ggplot,
    labs,
    scale_shape_manual,
    scale_x_log10,
    scale_y_log10,
    theme,
    theme_bw,
)

DEVICE_SHAPES = {"cpu": "o", "cuda": "^", "gpu": "^", "mps": "s"}
FAILED_COLOUR = "#d62728"
MIN_SPAN = 10.0  # sizes spanning less than this factor give an unreliable slope


def fit_exponent(n_cells: pd.Series, values: pd.Series) -> float:
    """Slope of log(values) on log(n_cells) (NaN with fewer than two positive sizes)."""
    keep = (n_cells > 0) & (values > 0) & values.notna()
    if n_cells[keep].nunique() < 2:
        return float("nan")
    return float(np.polyfit(np.log(n_cells[keep].astype(float)), np.log(values[keep].astype(float)), 1)[0])


def time_column(scaling: pd.DataFrame) -> str:
    """integrate_s when the table has it (any value), else the job wall-clock ``s`` (older tables)."""
    return "integrate_s" if "integrate_s" in scaling.columns and scaling["integrate_s"].notna().any() else "s"


def scaling_exponents(scaling: pd.DataFrame) -> pd.DataFrame:
    """Per method: runtime and memory exponents (the table's when given, else fitted here on the
    successful runs of the method's most used device), and the span of its successful sizes."""
    tcol = time_column(scaling)
    rows = []
    for method, grp in scaling.groupby("method"):
        ok = grp[grp["status"] == "ok"]
        exp_s = grp["exponent_s"].dropna().iloc[0] if grp.get("exponent_s", pd.Series()).notna().any() else None
        exp_m = (grp["exponent_mem"].dropna().iloc[0]
                 if grp.get("exponent_mem", pd.Series()).notna().any() else None)
        if (exp_s is None or exp_m is None) and len(ok):
            main = ok[ok["device"] == ok["device"].mode().iloc[0]]
            exp_s = fit_exponent(main["n_cells"], main[tcol]) if exp_s is None else exp_s
            exp_m = fit_exponent(main["n_cells"], main["max_rss_mb"]) if exp_m is None else exp_m
        span = ok["n_cells"].max() / ok["n_cells"].min() if len(ok) else np.nan
        rows.append({"method": method, "exponent_s": exp_s, "exponent_mem": exp_m, "span": span})
    return pd.DataFrame(rows)


def exponent_label(method: str, exp_s: float | None, exp_m: float | None, span: float | None = None) -> str:
    """Legend label "method (time ~ n^a, mem ~ n^b)"; unknown exponents are left out; sizes
    spanning less than MIN_SPAN are marked."""
    parts = [f"{what} ~ n^{e:.2f}" for what, e in (("time", exp_s), ("mem", exp_m))
             if e is not None and np.isfinite(e)]
    if parts and span is not None and np.isfinite(span) and span < MIN_SPAN:
        parts.append(f"sizes span only {span:.0f}x")
    return f"{method} ({', '.join(parts)})" if parts else method


def fig_scaling(scaling: pd.DataFrame):
    """Integration time, start-up time (imports, data loading, writing) and peak memory (RAM; GPU
    when recorded) vs number of cells, log-log, one line per method and device; device by point
    shape; exponents of the integration time and RAM in the legend; failed sizes are red crosses
    at the bottom of the panel."""
    if scaling is None or len(scaling) == 0:
        return None
    sc = scaling.copy()
    if "status" not in sc.columns:
        sc["status"] = "ok"
    sc["status"] = sc["status"].fillna("ok").astype(str)
    sc["device"] = sc["device"].fillna("cpu").astype(str)
    exps = scaling_exponents(sc).set_index("method")
    sc["method_label"] = [exponent_label(m, exps.at[m, "exponent_s"], exps.at[m, "exponent_mem"], exps.at[m, "span"])
                          for m in sc["method"]]
    tcol = time_column(sc)
    quantities = {("integration time (s)" if tcol == "integrate_s" else "job wall-clock (s)"): tcol}
    if "startup_s" in sc.columns and sc["startup_s"].notna().any():
        quantities["start-up + I/O (s)"] = "startup_s"
    quantities["peak RAM (MB)"] = "max_rss_mb"
    if "peak_gpu_mb" in sc.columns and sc["peak_gpu_mb"].notna().any():
        quantities["peak GPU memory (MB)"] = "peak_gpu_mb"
    long = pd.concat([sc.assign(quantity=q, value=sc[c]) for q, c in quantities.items()], ignore_index=True)
    long = long[(long["status"] == "failed") | (long["value"] > 0)].copy()
    floor = long[long["status"] == "ok"].groupby("quantity")["value"].min()
    failed = long["status"] == "failed"
    long.loc[failed, "value"] = long.loc[failed, "quantity"].map(floor).fillna(1.0)
    long = long[long["value"].notna()]
    if long.empty:
        return None
    long["quantity"] = pd.Categorical(long["quantity"], categories=list(quantities))
    long["line"] = long["method"] + "/" + long["device"]
    shapes = {d: DEVICE_SHAPES.get(d, "D") for d in long["device"].unique()}
    ncol = min(len(quantities), 2)
    nrow = int(np.ceil(len(quantities) / ncol))
    p = (ggplot(long, aes("n_cells", "value", color="method_label"))
         + geom_line(aes(group="line"), data=lambda d: d[d["status"] == "ok"])
         + geom_point(aes(shape="device"), data=lambda d: d[d["status"] == "ok"], size=2.5)
         + geom_point(data=lambda d: d[d["status"] == "failed"], shape="x", size=4, color=FAILED_COLOUR)
         + geom_text(aes(label="status"), data=lambda d: d[d["status"] == "failed"], color=FAILED_COLOUR,
                     size=7, va="bottom", nudge_y=0.08)
         + facet_wrap("~quantity", scales="free_y", ncol=ncol)
         + scale_x_log10()
         + scale_y_log10()
         + scale_shape_manual(values=shapes)
         + labs(x="number of cells", y="", color="method (fitted log-log slope of integration time and RAM)",
                shape="device")
         + theme_bw()
         + theme(figure_size=(9.0, 1.6 + 3.0 * nrow + 0.22 * sc["method"].nunique()),
                 legend_position="bottom", legend_direction="vertical"))
    return p
