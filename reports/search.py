"""The adaptive search beside the grids (tables/search.tsv): per dataset x method, the grid's best
against the search's best at equal run counts, and the trajectory of both (best score so far vs
runs). The score is the search's fixed score (search.tsv, an unscaled composite), never the
within-method scaled ``overall``, which moves as runs are added."""

from __future__ import annotations

import numpy as np
import pandas as pd
from plotnine import (
    aes,
    facet_wrap,
    geom_hline,
    geom_point,
    geom_step,
    ggplot,
    labs,
    scale_colour_manual,
    scale_x_continuous,
    theme,
    theme_bw,
)

from reports.figure_helpers import FAILED_COLOUR, figure_size, is_empty

FIXED = ["dataset", "method", "arm", "round", "trial", "setting", "n_seeds", "n_failed", "score", "best_so_far",
         "runs"]
ARM_COLOURS = {"grid": "#7f7f7f", "search": "#1f77b4"}
TOLERANCE = 1e-9  # scores equal up to float noise count as reaching the grid's best


def param_columns(search: pd.DataFrame) -> list[str]:
    """The searched parameters: search.tsv's columns between setting and n_seeds."""
    return [c for c in search.columns if c not in FIXED]


def best_row(arm: pd.DataFrame) -> pd.Series | None:
    """The arm's best trial (highest score; the earliest among equal scores)."""
    scored = arm[arm["score"].notna()].sort_values("trial", kind="stable")
    return None if scored.empty else scored.loc[scored["score"].idxmax()]


def params_text(row: pd.Series, params: list[str]) -> str:
    return ", ".join(f"{p}={row[p]:g}" if isinstance(row[p], float) else f"{p}={row[p]}" for p in params)


def comparison(search: pd.DataFrame) -> pd.DataFrame:
    """One row per dataset x method: grid best vs search best (setting values, score, runs) at the
    runs both made, the runs each needed to reach its best, and the runs the search needed to
    reach the grid's best score (empty when it did not)."""
    params = param_columns(search)
    rows = []
    for (dataset, method), block in search.groupby(["dataset", "method"], sort=True):
        grid = block[block["arm"] == "grid"].sort_values("trial")
        found = block[block["arm"] == "search"].sort_values("trial")
        equal = int(min(grid["runs"].max(), found["runs"].max())) if len(grid) and len(found) else 0
        grid, found = grid[grid["runs"] <= equal], found[found["runs"] <= equal]
        g, s = best_row(grid), best_row(found)
        row = {"dataset": dataset, "method": method, "runs each": equal}
        for name, best in (("grid", g), ("search", s)):
            row[f"{name} best"] = "" if best is None else params_text(best, params)
            row[f"{name} score"] = np.nan if best is None else best["score"]
            row[f"{name}: runs to its best"] = np.nan if best is None else best["runs"]
        # the grid's order is the config's, arbitrary: in a random order its best (one of m tied
        # settings among n) comes on average at setting (n + 1) / (m + 1)
        ties = int((grid["score"] >= row["grid score"] - TOLERANCE).sum()) if g is not None else 0
        row["grid: runs to its best, random order (mean)"] = (
            np.nan if g is None else (len(grid) + 1) / (ties + 1) * g["n_seeds"])
        reached = found[found["score"] >= row["grid score"] - TOLERANCE] if g is not None else found.iloc[:0]
        row["search: runs to the grid's best score"] = reached["runs"].min() if len(reached) else np.nan
        row["search found the grid's best setting"] = (
            "n/a" if g is None or s is None else
            "yes" if any(all(_same(r[p], g[p]) for p in params) for _, r in found.iterrows()) else "no")
        row["failed trials (grid / search)"] = f"{int((grid['score'].isna()).sum())} / {int(found['score'].isna().sum())}"
        rows.append(row)
    return pd.DataFrame(rows)


def _same(a, b) -> bool:
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return bool(np.isclose(a, b))
    return str(a) == str(b)


def fig_search_trajectory(search: pd.DataFrame):
    """Best fixed score so far vs runs, grid in its order and search by trial, per dataset x
    method; points = each trial's own score, red crosses at the panel's lowest score = trials
    whose runs all failed, dashed line = the grid's best."""
    if is_empty(search) or search["score"].notna().sum() == 0:
        return None
    df = search.copy()
    df["panel"] = df["dataset"].astype(str) + " / " + df["method"].astype(str)
    df["status"] = np.where(df["score"].isna(), "failed", "ok")
    df["shown"] = df["score"].fillna(df.groupby("panel")["score"].transform("min"))
    grid_best = (df[df["arm"] == "grid"].groupby("panel", as_index=False)["score"].max()
                 .rename(columns={"score": "grid_best"}))
    n_panels = df["panel"].nunique()
    ncol = min(n_panels, 3)
    width, height = figure_size(ncol, int(np.ceil(n_panels / ncol)), col_w=3.1, row_h=3.2)  # 3 panels: 11.8 in
    return (ggplot(df, aes("runs", "best_so_far", colour="arm"))
            + geom_hline(grid_best, aes(yintercept="grid_best"), linetype="dashed", colour=ARM_COLOURS["grid"])
            + geom_point(aes(y="shown"), data=df[df["status"] == "ok"], alpha=0.45, size=2)
            + geom_point(aes(y="shown"), data=df[df["status"] == "failed"], shape="x", size=3,
                         colour=FAILED_COLOUR)
            + geom_step(data=df[df["best_so_far"].notna()], size=1.1, direction="hv")
            + facet_wrap("panel", ncol=ncol, scales="free_y")
            + scale_colour_manual(values=ARM_COLOURS)
            + scale_x_continuous(breaks=lambda lims: range(1, int(lims[1]) + 1))
            + labs(x="runs (grid in its order, search by trial)", y="fixed score (best so far; points: each run)",
                   colour="", title="Adaptive search vs grid: best score after n runs")
            + theme_bw() + theme(figure_size=(width, height), legend_position="top"))


def search_section(search: pd.DataFrame | None, figure: str, table_html) -> str:
    """The report's section: what the score is, the comparison table and the trajectory figure."""
    if is_empty(search):
        return ""
    intro = ("<p>Each method with a <code>search:</code> block: its grid and an Optuna TPE search (seeded, in "
             "rounds; each round's settings chosen from the scores of the rounds before) over the same space, "
             "every trial a normal run. Both are scored with one fixed score, w &times; mean(raw bio metrics) "
             "+ (1 &minus; w) &times; mean(raw batch metrics) with w the study's bio_weight (0.6 unless set; scIB's "
             "unscaled overall), not the "
             "within-method scaled overall of scores.tsv, which moves as runs are added. Compared at equal run "
             "counts (runs = settings &times; seeds).</p>")
    return (f'<section id="search"><h2>Adaptive search beside the grids</h2>{intro}'
            f"{table_html(comparison(search), 'table-search-comparison')}{figure}"
            f"<details><summary><b>Every grid setting and search trial (search.tsv)</b></summary>"
            f"{table_html(search, 'table-search')}</details></section>")


def search_nav(search: pd.DataFrame | None) -> str:
    return "" if is_empty(search) else '<a href="#search">Search</a>'

