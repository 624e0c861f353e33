"""The numbers behind the papers' claims (claim_tests.tsv): per comparison, every seed's value of
both sides, their means, and whether the comparison holds."""

from __future__ import annotations

from pathlib import PurePosixPath

import numpy as np
import pandas as pd
from plotnine import (
    aes,
    element_text,
    facet_wrap,
    geom_point,
    ggplot,
    labs,
    position_jitter,
    scale_colour_manual,
    scale_shape_manual,
    theme,
    theme_bw,
)

from reports.figure_helpers import figure_size, is_empty

SIDE_COLOURS = {"a (claimed higher / lower / comparable)": "#c0392b", "b (compared with)": "#2c3e50"}
SIDES = list(SIDE_COLOURS)


def comparison_label(row: pd.Series) -> str:
    lm = f" [{float(row['label_missing']):.0%} hidden]" if float(row.get("label_missing") or 0) else ""
    return (f"{row['metric']}{lm}: {row['method_a']} {row['setting_a']} {row['expected']} "
            f"vs {row['method_b']} {row['setting_b']}")


def outcome(row: pd.Series) -> str:
    if not bool(row["tested"]):
        return "not tested (< 3 seeds)"
    return "holds" if str(row["holds"]).lower() in ("true", "1", "1.0") else "not shown"


def claim_points(claim_tests: pd.DataFrame) -> pd.DataFrame:
    """Long table: one row per comparison x side x seed value."""
    rows = []
    for _, r in claim_tests.iterrows():
        label = comparison_label(r)
        panel = f"{r['claim_id']}\n{r['dataset']}"
        for side, col in zip(SIDES, ("values_a", "values_b")):
            text = r.get(col)
            values = [] if pd.isna(text) or text == "" else [float(v) for v in str(text).split(";")]
            rows += [{"panel": panel, "comparison": label, "side": side, "value": v, "outcome": outcome(r)}
                     for v in values]
    return pd.DataFrame(rows, columns=["panel", "comparison", "side", "value", "outcome"])


def fig_claims(claim_tests: pd.DataFrame):
    """Per claim x dataset (panels), each comparison's per-seed values of both sides; the shape
    says whether the comparison holds (tested), is not shown, or was not tested."""
    if is_empty(claim_tests) or "values_a" not in claim_tests.columns:
        return None
    points = claim_points(claim_tests)
    if points.empty:
        return None
    points["side"] = pd.Categorical(points["side"], SIDES)
    order = list(dict.fromkeys(points["comparison"]))
    points["comparison"] = pd.Categorical(points["comparison"], list(reversed(order)))
    panels = points["panel"].nunique()
    per_panel = points.groupby("panel")["comparison"].nunique().max()
    width, height = figure_size(1, panels, col_w=9.0, row_h=0.5 + 0.45 * per_panel)
    return (ggplot(points, aes("value", "comparison", colour="side", shape="outcome"))
            + geom_point(size=2.4, alpha=0.85, position=position_jitter(height=0.12, width=0, random_state=0))
            + facet_wrap("~panel", ncol=1, scales="free")
            + scale_colour_manual(values=SIDE_COLOURS)
            + scale_shape_manual(values={"holds": "o", "not shown": "x", "not tested (< 3 seeds)": "^"})
            + labs(x="metric value (one point per seed)", y="", colour="side", shape="comparison",
                   title="The numbers behind the papers' claims (claim_tests.tsv)")
            + theme_bw()
            + theme(figure_size=(width, height), axis_text_y=element_text(size=7), strip_text=element_text(size=8),
                    legend_position="bottom", legend_direction="vertical"))


def claims_markdown(claims: pd.DataFrame, claim_tests: pd.DataFrame, header: str, figures: list[str]) -> str:
    """docs/results.md: the claims table, the figures behind it and every comparison's numbers."""
    def cell(v) -> str:
        if v is None or (isinstance(v, float) and np.isnan(v)):
            return ""
        return str(v).replace("|", "\\|").replace("\n", " ")

    def table(df: pd.DataFrame, cols: list[str]) -> str:
        cols = [c for c in cols if c in df.columns]
        lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
        lines += ["| " + " | ".join(cell(r[c]) for c in cols) + " |" for _, r in df.iterrows()]
        return "\n".join(lines)

    counts = claims["verdict"].value_counts()
    parts = [header, "",
             "Verdicts: " + ", ".join(f"{int(n)} {v}" for v, n in counts.items()) + ".", "",
             "## Claims", "",
             table(claims, ["paper", "figure", "quote", "dataset", "selection", "rule", "verdict", "numbers", "why"]),
             "", "## Figures", ""]
    parts += [f"![{PurePosixPath(f).stem}]({f})" for f in figures]
    tests = claim_tests.copy()
    for c in ("mean_a", "sd_a", "mean_b", "sd_b", "p_value", "p_adj"):
        if c in tests.columns:
            tests[c] = pd.to_numeric(tests[c], errors="coerce").map(lambda x: "" if np.isnan(x) else f"{x:.3g}")
    parts += ["", "## Every comparison (claim_tests.tsv)", "",
              table(tests, ["claim_id", "dataset", "metric", "label_missing", "method_a", "setting_a", "values_a",
                            "method_b", "setting_b", "values_b", "expected", "test", "p_value", "p_adj", "holds"]),
              ""]
    return "\n".join(parts)

