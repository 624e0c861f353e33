"""The report's sections that say how far its results can be trusted: the convergence banner
at the top (which trained runs were still learning), the datasets' batch-effect strength,
and the papers' claims checked on this study. HTML fragments, from the tables only."""

from __future__ import annotations

import html

import numpy as np
import pandas as pd

# metrics/convergence.py applies this rule when it builds runs.tsv (tests keep the two in step)
CONVERGENCE_WINDOW = 0.10
CONVERGENCE_LATE_SHARE = 0.04
CONVERGENCE_NOISE_Z = 2.0
CONVERGENCE_LEARNED = 10.0
CONVERGENCE_MIN_EPOCHS = 20
CONVERGENCE_RULE = (
    f"Each trained run is judged on its reconstruction loss per epoch (column <code>convergence_term</code>), "
    f"by differences of the curve only, so a constant in the loss or a curve that crosses zero changes nothing. "
    f"Its <i>improvement</i> is the first epoch's value minus the lowest mean over a window of "
    f"{CONVERGENCE_WINDOW:.0%} of its epochs (at least 2); its <i>noise</i> is the epoch-to-epoch scatter "
    f"(robust standard deviation of the first differences around their median, over &radic;2). "
    f"A run <b>learned</b> when its improvement is at least {CONVERGENCE_LEARNED:g} times its noise "
    f"(<code>improvement_snr</code>; a curve of Gaussian noise of 20 or more epochs stays below it in 999 of 1,000 draws, full runs of "
    f"the sysVI family and scVI reach hundreds). A run is <b>not converged</b> when its last window still gained more than "
    f"{CONVERGENCE_LATE_SHARE:.0%} of that improvement over the window before it (<code>late_share</code>) and "
    f"that gain exceeds {CONVERGENCE_NOISE_Z:g} standard errors of the noise. A run of fewer than "
    f"{CONVERGENCE_MIN_EPOCHS} epochs is too short to judge: it is flagged <i>not converged</i>, and whether it "
    f"learned is <i>not assessable</i>. Models that hold cells out of training (sysVI family, scvi-tools models: "
    f"10 %) are judged on the held-out reconstruction, which stops improving when the model does; on small data "
    f"the training term keeps falling as the training cells are memorised. Runs without a loss history or "
    f"without a reconstruction term are <i>not assessable</i>; methods without a training loop are "
    f"<i>not trained</i>. Columns <code>converged</code>, <code>learned</code>, <code>late_share</code>, "
    f"<code>improvement_snr</code> and <code>convergence_note</code> of runs.tsv.")

BATCH_STRENGTH_TEXT = (
    "Batch-effect strength before integration (after sysVI, Hrovatin et al. 2025, Fig. 1c), on the "
    "unintegrated PCA (first 15 PCs) of each dataset: for every cell type with at least 50 cells in two or "
    "more batches, the distance between the batch means (corrected for their sampling noise) divided by "
    "the spread of cells around their batch mean; the dataset's value is the median over those cell types. "
    "0 = the batches overlap as if drawn from one distribution; 1 = the batch means lie one typical "
    "cell-to-mean distance apart. <code>system_ratio</code> (sysVI's own measure: between-system over "
    "within-system distance of batch means, ~1 without a system effect) needs several batches per system.")

CLAIMS_TEXT = (
    "Each row tests one qualitative claim of a seed paper on one dataset of this study, from scores.tsv "
    "(per-seed values at each method's best setting) and best.tsv. With at least 3 successful seeds on both "
    "sides a comparison is a one-sided Welch t-test in the claimed direction, Benjamini-Hochberg adjusted "
    "per dataset and metric, significant at adjusted p &lt; 0.1 (sysVI's procedure); with fewer seeds only "
    "the means are compared and the evidence column says so. \"Comparable\" (not lower) means not "
    "significantly lower, or at most 0.05 lower on means only. A claim is reproduced when every comparison "
    "of its row holds. Per-comparison numbers: claim_tests.tsv.")

VERDICT_CLASS = {"reproduced": "ok", "not reproduced": "bad", "not testable here": "na"}


def esc(value) -> str:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return ""
    return html.escape(str(value))


def simple_table(df: pd.DataFrame, table_id: str, row_class: pd.Series | None = None) -> str:
    """A sortable HTML table (all rows); ``row_class`` gives each row's CSS class."""
    head = "".join(f"<th>{esc(c)}</th>" for c in df.columns)
    classes = row_class.tolist() if row_class is not None else [""] * len(df)
    rows = []
    for cls, row in zip(classes, df.itertuples(index=False)):
        cells = "".join(f"<td>{esc(f'{v:.3g}' if isinstance(v, float) and not np.isnan(v) else v)}</td>"
                        for v in row)
        rows.append(f'<tr class="{esc(cls)}">{cells}</tr>' if cls else f"<tr>{cells}</tr>")
    return (f'<div class="scroll"><table class="sortable" id="{esc(table_id)}"><thead><tr>{head}</tr></thead>'
            f'<tbody>{"".join(rows)}</tbody></table></div>')


# ----------------------------------------------------------------------------- convergence

def convergence_banner(runs: pd.DataFrame | None) -> str:
    """The top-of-report note on training: runs not converged and runs that did not learn, listed."""
    if runs is None or "converged" not in runs.columns:
        return ""
    trained = runs[runs["converged"].isin(["yes", "no", "not assessable"])]
    if trained.empty:
        return ""
    learned = trained["learned"] if "learned" in trained.columns else pd.Series("", index=trained.index)
    flagged = trained[trained["converged"] == "no"]
    untrained = trained[learned == "no"]
    unassessed = trained[trained["converged"] == "not assessable"]
    cols = ["dataset", "method", "setting", "seed", "label_missing", "epochs", "late_share", "improvement_snr",
            "convergence_note"]
    parts = []
    if len(flagged):
        methods = ", ".join(sorted(flagged["method"].unique()))
        parts.append(f'<div class="warn"><b>⚠ {len(flagged)} of {len(trained)} trained runs are not converged</b> '
                     f"({esc(methods)}): their reconstruction loss was still falling when training stopped, or "
                     f"they are too short to judge, so their scores may understate what the method can do. "
                     f"<details><summary>the runs</summary>"
                     f'{simple_table(flagged[[c for c in cols if c in flagged.columns]], "not-converged")}'
                     f"</details></div>")
    else:
        parts.append(f"<p>Convergence: none of the {len(trained) - len(unassessed)} assessable trained runs is "
                     f"flagged as not converged.</p>")
    if len(untrained):
        methods = ", ".join(sorted(untrained["method"].unique()))
        parts.append(f'<div class="warn"><b>⚠ {len(untrained)} trained run(s) did not learn</b> ({esc(methods)}): '
                     f"their reconstruction loss improved by less than {CONVERGENCE_LEARNED:g} times its "
                     f"epoch-to-epoch noise, as a run that cannot learn does (learning rate ~0); read their scores as "
                     f"those of a model that did not train. "
                     f"<details><summary>the runs</summary>"
                     f'{simple_table(untrained[[c for c in cols if c in untrained.columns]], "not-learned")}'
                     f"</details></div>")
    if len(unassessed):
        why = unassessed.groupby("method")["convergence_note"].first()
        listed = "; ".join(f"{esc(m)} ({esc(n)})" for m, n in why.items())
        parts.append(f"<p>Not assessable: {len(unassessed)} trained run(s): {listed}.</p>")
    parts.append(f'<p class="rule">{CONVERGENCE_RULE}</p>')
    return "\n".join(parts)


# ----------------------------------------------------------------------------- datasets

def strength_text(row: pd.Series) -> str:
    """'batch separation 1.28 (7 shared cell types)' or why there is none."""
    if pd.isna(row.get("separation")):
        return f"batch separation n/a: {row.get('note') or 'no shared cell types'}"
    if row.get("n_labels") == 0:
        return f"batch separation {row['separation']:.2f} (unlabelled: all cells as one group)"
    return f"batch separation {row['separation']:.2f} ({int(row['n_shared_types'])} shared cell types)"


def dataset_strengths(batch_strength: pd.DataFrame | None) -> dict[str, str]:
    """dataset -> short batch-strength text for headings."""
    if batch_strength is None or batch_strength.empty:
        return {}
    return {str(r["dataset"]): strength_text(r) for _, r in batch_strength.iterrows()}


def dataset_line(r: pd.Series) -> str:
    """Source, size and cell types of one batch_strength.tsv row (only the note for a failed dataset)."""
    if pd.isna(r.get("n_cells")):  # a failed dataset: the heading has the note
        return ""
    return (f"<p>{esc(r.get('source', ''))}; {int(r['n_cells'])} cells, {int(r['n_batches'])} batches, "
            f"{int(r['n_labels'])} cell types"
            + (f"; found in one batch only: {esc(r['batch_unique_types'])}"
               if isinstance(r.get("batch_unique_types"), str) and r["batch_unique_types"] else "")
            + (f"; per cell type: {esc(r['per_type'])}" if isinstance(r.get("per_type"), str) else "")
            + (f"; {esc(r['note'])}" if isinstance(r.get("note"), str) and r["note"] else "")
            + "</p>")


def datasets_section(batch_strength: pd.DataFrame | None) -> str:
    """The Datasets section: one heading per dataset with its batch-effect strength, and the table."""
    if batch_strength is None or batch_strength.empty:
        return '<p class="nodata">no data for batch-effect strength (batch_strength.tsv not available)</p>'
    heads = "".join(f"<h3>{esc(r['dataset'])}: {esc(strength_text(r))}</h3>" + dataset_line(r)
                    for _, r in batch_strength.iterrows())
    return f'<p class="rule">{BATCH_STRENGTH_TEXT}</p>{heads}{simple_table(batch_strength, "table-batch-strength")}'


# ----------------------------------------------------------------------------- claims

def claims_summary(claims: pd.DataFrame | None) -> str:
    """One line for the top of the report: how many claim rows were reproduced, and on what evidence."""
    if claims is None or claims.empty:
        return ""
    counts = claims["verdict"].value_counts()
    text = ", ".join(f"{int(counts.get(v, 0))} {v}" for v in VERDICT_CLASS)
    decided = claims[claims["verdict"] != "not testable here"]
    evidence = decided["evidence"].fillna("").astype(str) if "evidence" in decided.columns else pd.Series(dtype=str)
    means_only = int(evidence.str.startswith(("means only", "mixed")).sum())
    note = (f" {means_only} of the {len(decided)} decided rows rest on means only (fewer than 3 seeds), "
            "not on a test." if means_only else "")
    return f'<p>Papers\' claims (<a href="#claims">section</a>): {esc(text)}.{esc(note)}</p>'


def claims_section(claims: pd.DataFrame | None) -> str:
    """The Claims section: the rule, then one row per claim x dataset, coloured by verdict."""
    if claims is None or claims.empty:
        return '<p class="nodata">no data for claims (claims.tsv not available)</p>'
    cols = [c for c in ["paper", "figure", "claim", "dataset", "rule", "numbers", "verdict", "evidence", "why"]
            if c in claims.columns]
    classes = claims["verdict"].map(lambda v: f"verdict-{VERDICT_CLASS.get(v, 'na')}")
    return f'<p class="rule">{CLAIMS_TEXT}</p>{simple_table(claims[cols], "table-claims", classes)}'


TRUST_CSS = """
.warn { background: #fff4e5; border-left: 4px solid #e67e22; padding: 0.5em 1em; margin: 0.5em 0; }
.rule { color: #444; font-size: 13px; max-width: 1100px; }
tr.verdict-ok td { background: #e8f6e8; } tr.verdict-bad td { background: #fde8e8; }
tr.verdict-na td { color: #666; }
"""
