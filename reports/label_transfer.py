"""Report section of DAVAE's cross-modality task: labels transferred from the reference batch
(RNA) to another modality by kNN in each run's integrated space (tables/label_transfer.tsv).

The DAVAE preprint shows this task with UMAPs "colored by batches (a) or cell types (b)" (Fig. 4,
the report's UMAP figures coloured by batch = modality and by cell type) and judges the
transferred labels; here every method is scored the same way, as bars of accuracy and macro-F1
per target modality with the accuracy of a label-blind guess as a dashed line.
"""

from __future__ import annotations

import html

import numpy as np
import pandas as pd
from plotnine import (
    aes,
    coord_flip,
    facet_wrap,
    geom_col,
    geom_hline,
    geom_point,
    geom_text,
    ggplot,
    labs,
    position_dodge,
    scale_y_continuous,
    theme,
    theme_bw,
)

from reports.figure_helpers import FAILED_COLOUR, figure_size, is_empty

SCORES = ["accuracy", "macro_f1"]


def transfer_panel(label_transfer: pd.DataFrame) -> pd.Series:
    """'dataset: RNA -> ATAC' per row (one facet per dataset x target modality)."""
    return label_transfer["dataset"] + ": " + label_transfer["reference"] + " \u2192 " + label_transfer["target"]


def fig_label_transfer(label_transfer: pd.DataFrame):
    """Accuracy and macro-F1 of transferred labels per method (bars: mean over seeds, points:
    seeds), one panel per dataset x target modality; dashed line: chance accuracy. A method whose
    every run failed is labelled "failed" at zero."""
    if is_empty(label_transfer) or not (label_transfer["status"] == "ok").any():
        return None
    lt = label_transfer.assign(panel=transfer_panel(label_transfer))
    ok = lt[lt["status"] == "ok"]
    long = ok.melt(id_vars=["panel", "method", "seed"], value_vars=SCORES, var_name="score")
    means = long.groupby(["panel", "method", "score"], as_index=False)["value"].mean().assign(status="ok")
    failed = (lt[lt["status"] == "failed"].drop_duplicates(["panel", "method"])[["panel", "method"]]
              .merge(means[["panel", "method"]].drop_duplicates(), how="left", indicator=True))
    failed = failed[failed["_merge"] == "left_only"][["panel", "method"]]
    means = pd.concat([means, failed.assign(score="accuracy", value=0.0, status="failed")], ignore_index=True)
    order = lt.groupby("method")["accuracy"].mean().fillna(-1).sort_values().index.tolist()
    for df in (long, means):
        df["method"] = pd.Categorical(df["method"], order)
    chance = ok.groupby("panel", as_index=False)["chance_accuracy"].mean()
    n_panels = lt["panel"].nunique()
    dodge = position_dodge(width=0.8)
    return (ggplot(means, aes("method", "value", fill="score"))
            + geom_col(position=dodge, width=0.75)
            + geom_point(data=long, position=dodge, size=0.8, color="black", show_legend=False)
            + geom_text(aes(label="status"), data=lambda d: d[d["status"] == "failed"], y=0.02, ha="left",
                        color=FAILED_COLOUR, size=7)
            + geom_hline(aes(yintercept="chance_accuracy"), data=chance, linetype="dashed", color="grey")
            + facet_wrap("~panel", ncol=min(n_panels, 2))
            + scale_y_continuous(limits=(0, 1.02))
            + coord_flip()
            + labs(x="", y="transferred labels vs truth (dashed: chance accuracy)", fill="")
            + theme_bw()
            + theme(figure_size=figure_size(min(n_panels, 2), int(np.ceil(n_panels / 2)), 3.4,
                                            0.3 * lt["method"].nunique() + 0.9),
                    legend_position="bottom"))


def summary_table(label_transfer: pd.DataFrame) -> pd.DataFrame:
    """One row per method; per dataset x target: accuracy and macro-F1 as 'mean ± sd (n seeds)'."""
    ok = label_transfer[label_transfer["status"] == "ok"].assign(panel=lambda d: transfer_panel(d))
    if ok.empty:
        return pd.DataFrame()

    def cell(values: pd.Series) -> str:
        if len(values) == 1:
            return f"{values.iloc[0]:.3f}"
        return f"{values.mean():.3f} \u00b1 {values.std(ddof=1):.3f} (n={len(values)})"

    parts = []
    for score in SCORES:
        wide = ok.groupby(["method", "panel"])[score].apply(cell).unstack("panel")
        wide.columns = [f"{panel} {score}" for panel in wide.columns]
        parts.append(wide)
    table = pd.concat(parts, axis=1)
    table = table[sorted(table.columns)]
    table["mean accuracy"] = ok.groupby("method")["accuracy"].mean().round(3)
    return table.sort_values("mean accuracy", ascending=False).reset_index()


def label_transfer_section(label_transfer: pd.DataFrame | None) -> str:
    """HTML of the section (empty when the study has no label-transfer table)."""
    if label_transfer is None:
        return ""
    intro = ("<p>DAVAE's cross-modality task: each cell of the other modality takes the majority label of its "
             "k nearest reference (RNA) cells in the method's integrated space; accuracy and macro-F1 against "
             "the simulated truth (a spot's truth: its most frequent cell type). Chance accuracy is what a "
             "label-blind guess with the reference's label frequencies reaches. The UMAPs coloured by batch "
             "(= modality) and by cell type are in the Figures section; the bars are figure "
             "<a href=\"#fig-label_transfer\">label_transfer</a>.</p>")
    table = summary_table(label_transfer)
    failed = label_transfer[label_transfer["status"] == "failed"]
    rows = "".join(f"<li>{html.escape(str(r.dataset))} / {html.escape(str(r.method))} (seed {r.seed}): "
                   f"{html.escape(str(r.error))}</li>" for r in failed.itertuples())
    body = (table.to_html(index=False, classes="sortable", border=0, escape=True) if not table.empty
            else '<p class="nodata">no successful run to transfer labels with</p>')
    chance = (label_transfer[label_transfer["status"] == "ok"].assign(panel=lambda d: transfer_panel(d))
              .groupby("panel")["chance_accuracy"].mean())
    chance_text = "; ".join(f"{html.escape(p)}: {v:.3f}" for p, v in chance.items())
    return (f'<section id="label-transfer"><h2>Cross-modality label transfer (label_transfer.tsv)</h2>{intro}'
            f"{body}<p>Chance accuracy: {chance_text or 'n/a'}.</p>"
            + (f"<p>Failed runs (no labels transferred):</p><ul>{rows}</ul>" if rows else "") + "</section>")
