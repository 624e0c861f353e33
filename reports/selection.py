"""How each best setting was chosen, in words, from best.tsv's selection columns
(``criterion``, ``criterion_source``, ``failed_seeds_rule``; rules in metrics/select.py).

The summary figure puts these lines in its caption and the HTML report above the best table,
so a reader sees which datasets were selected without labels. A best.tsv without the columns
(older tables) gives no lines.
"""

from __future__ import annotations

import html

import pandas as pd

CRITERION_TEXT = {
    "composite": "composite score (bio and batch metrics)",
    "unsupervised": "label-free score (scCRAFT's per-batch cluster proxy in place of bio, plus batch)",
}
FAILED_SEEDS_TEXT = {
    "rank_below": "a setting with a failed seed ranks below every setting with fewer failed seeds",
    "count_as_worst": "a failed seed counts as 0 in its setting's mean score",
}


def criterion_lines(best: pd.DataFrame | None) -> list[str]:
    """One line per (criterion, source): the score that chose the best settings and the datasets."""
    if best is None or "criterion" not in best.columns or best.empty:
        return []
    b = best.assign(criterion_source=best.get("criterion_source", pd.Series("", index=best.index)).fillna(""))
    lines = []
    for (criterion, source), grp in b.groupby(["criterion", "criterion_source"], sort=True):
        text = CRITERION_TEXT.get(criterion, str(criterion))
        why = f" [{source}]" if source else ""
        datasets = sorted(grp["dataset"].unique())
        partly = [d for d in datasets if len(grp[grp["dataset"] == d]) < len(b[b["dataset"] == d])]
        names = ", ".join(d + (f" ({', '.join(sorted(grp[grp['dataset'] == d]['method']))})" if d in partly else "")
                          for d in datasets)
        lines.append(f"best settings chosen by the {text}{why}: {names}")
    return lines


def failed_seeds_line(best: pd.DataFrame | None) -> str:
    """The failed-seed rule of the selection ('' when best.tsv does not record it)."""
    if best is None or "failed_seeds_rule" not in best.columns:
        return ""
    rules = sorted(best["failed_seeds_rule"].dropna().unique())
    return "; ".join(f"failed seeds ({r}): {FAILED_SEEDS_TEXT.get(r, r)}" for r in rules)


def selection_lines(best: pd.DataFrame | None) -> list[str]:
    """Every line that says how the best settings were chosen."""
    rule = failed_seeds_line(best)
    return criterion_lines(best) + ([rule] if rule else [])


def selection_html(best: pd.DataFrame | None) -> str:
    """The selection lines as an HTML list ('' when there are none)."""
    lines = selection_lines(best)
    if not lines:
        return ""
    items = "".join(f"<li>{html.escape(line)}</li>" for line in lines)
    return f'<ul class="selection">{items}</ul>'
