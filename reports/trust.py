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

# metrics/latent_scale.py applies this rule when it builds runs.tsv (tests keep the two in step)
LATENT_WITHIN_RATIO = 10.0
LATENT_DATASET_RATIO = 2.0
LATENT_MIN_METHODS = 3
LATENT_SCALE_RULE = (
    f"A trained run's latent space is <b>stretched</b> when its largest dimension's standard deviation (over "
    f"cells, of the embedding: the posterior means for the VAEs) is more than {LATENT_WITHIN_RATIO:g} times the "
    f"median over its dimensions (a few dimensions carry it) and more than {LATENT_DATASET_RATIO:g} times what "
    f"the other methods on the same dataset reach (the median over the other methods of each one's median "
    f"largest sd; "
    f"assessed on datasets with at least {LATENT_MIN_METHODS} such methods). Either alone is common in a healthy "
    f"model (unused VAE dimensions sit near 0; methods differ in scale). Columns <code>latent_sd_max</code>, "
    f"<code>latent_sd_ratio</code>, <code>latent_sd_vs_dataset</code> and <code>latent_scale_flag</code> of "
    f"runs.tsv (empty for runs without a trained embedding).")

BATCH_STRENGTH_TEXT = (
    "Batch-effect strength before integration (after sysVI, Hrovatin et al. 2025, Fig. 1c), on the "
    "unintegrated PCA (first 15 PCs) of each dataset: for every cell type with at least 50 cells in two or "
    "more batches, the distance between the batch means (corrected for their sampling noise) divided by "
    "the spread of cells around their batch mean; the dataset's value is the median over those cell types. "
    "0 = the batches overlap as if drawn from one distribution; 1 = the batch means lie one typical "
    "cell-to-mean distance apart. <code>system_ratio</code> (sysVI's own measure: between-system over "
    "within-system distance of batch means, ~1 without a system effect; about 3-4 in sysVI's cross-species, "
    "organoid-tissue and cell-nuclei datasets, Fig. 1c) needs several batches per system.")

CLAIMS_TEXT = (
    "Each row tests one claim of a seed paper, in the paper's words, on one dataset that can show it "
    "(sysVI's claims need substantial, cell-type-specific system effects: real cross-system data or the "
    "<code>systems</code> simulations, not Splatter; scCRAFT's simulation claim runs on the Splatter scenarios). "
    "Settings are chosen by each paper's own selection (the selection column). With at least 3 successful "
    "seeds on both sides a difference is a two-sided Welch t-test and \"comparable\" an equivalence test "
    "(TOST, margin 0.05), two-stage Benjamini-Hochberg adjusted per dataset and metric, shown at adjusted "
    "p &lt; 0.1 (sysVI's procedure). With fewer seeds nothing is tested: the row reads \"direction only (not "
    "tested)\" whatever the means say. A row resting on a run the convergence rule flags is not testable. "
    "Per-comparison numbers: claim_tests.tsv. The claims study with 3 seeds on data that can test every "
    "claim: <code>config/claims.yaml</code>, its result in the repository's <code>docs/results.md</code>.")

VERDICT_CLASS = {"reproduced": "ok", "not reproduced": "bad", "direction only (not tested)": "na",
                 "not testable here": "na"}


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


def warn_runs(headline: str, text: str, rows: pd.DataFrame, table_id: str, extra: str = "") -> str:
    """A warning box: bold headline naming the methods of ``rows``, the explanation, the runs in a
    collapsible table, then ``extra`` (HTML) inside the box."""
    methods = ", ".join(sorted(rows["method"].unique()))
    return (f'<div class="warn"><b>⚠ {headline}</b> ({esc(methods)}): {text} '
            f"<details><summary>the runs</summary>{simple_table(rows, table_id)}</details>{extra}</div>")


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
        parts.append(warn_runs(f"{len(flagged)} of {len(trained)} trained runs are not converged",
                               "their reconstruction loss was still falling when training stopped, or they are "
                               "too short to judge, so their scores may understate what the method can do.",
                               flagged[[c for c in cols if c in flagged.columns]], "not-converged"))
    else:
        parts.append(f"<p>Convergence: none of the {len(trained) - len(unassessed)} assessable trained runs is "
                     f"flagged as not converged.</p>")
    if len(untrained):
        parts.append(warn_runs(f"{len(untrained)} trained run(s) did not learn",
                               f"their reconstruction loss improved by less than {CONVERGENCE_LEARNED:g} times its "
                               "epoch-to-epoch noise, as a run that cannot learn does (learning rate ~0); read their "
                               "scores as those of a model that did not train.",
                               untrained[[c for c in cols if c in untrained.columns]], "not-learned"))
    if len(unassessed):
        why = unassessed.groupby("method")["convergence_note"].first()
        listed = "; ".join(f"{esc(m)} ({esc(n)})" for m, n in why.items())
        parts.append(f"<p>Not assessable: {len(unassessed)} trained run(s): {listed}.</p>")
    parts.append(f'<p class="rule">{CONVERGENCE_RULE}</p>')
    return "\n".join(parts)


def latent_scale_banner(runs: pd.DataFrame | None) -> str:
    """The top-of-report note on latent scale: runs whose largest latent dimension dwarfs the rest."""
    if runs is None or "latent_scale_flag" not in runs.columns:
        return ""
    assessed = runs[runs["latent_scale_flag"].isin(["yes", "no"])]
    unassessed = _latent_unassessed(runs)
    if assessed.empty:
        return f"<p>Latent scale: {unassessed[0].lower()}{unassessed[1:]}</p>" if unassessed else ""
    flagged = assessed[assessed["latent_scale_flag"] == "yes"]
    if flagged.empty:
        return (f"<p>Latent scale: none of the {len(assessed)} assessed trained runs has a stretched latent "
                f"space.{' ' + unassessed if unassessed else ''}</p>")
    cols = [c for c in ["dataset", "method", "setting", "seed", "label_missing", "latent_sd_max", "latent_sd_ratio",
                        "latent_sd_vs_dataset"] if c in flagged.columns]
    return warn_runs(f"{len(flagged)} of {len(assessed)} trained runs have a stretched latent space",
                     "a few dimensions, stretched far beyond what the other methods reach, carry the embedding, so "
                     "the neighbour graph behind every metric rests on them. This is how a degenerate solution "
                     "looks: sysVI (paper code) on Splatter common-3 had three such dimensions and did not mix its "
                     "systems at all. The scores of these runs describe those few directions; look at their UMAPs "
                     f"before reading them. {unassessed}", flagged[cols], "latent-scale",
                     extra=f'<p class="rule">{LATENT_SCALE_RULE}</p>')


def _latent_unassessed(runs: pd.DataFrame) -> str:
    """A sentence naming the datasets whose trained runs were not assessed (too few methods), or ""."""
    if "latent_sd_max" not in runs.columns:
        return ""
    left = runs[runs["latent_sd_max"].notna() & ~runs["latent_scale_flag"].isin(["yes", "no"])]
    if left.empty:
        return ""
    per = [f"{esc(str(d))} ({', '.join(esc(str(m)) for m in sorted(block['method'].unique()))})"
           for d, block in left.groupby("dataset")]
    return (f"Not assessed on {'; '.join(per)}: the rule compares a run with the other methods on its dataset and "
            f"needs at least {LATENT_MIN_METHODS} methods with a trained embedding there; add methods to assess.")


# ----------------------------------------------------------------------------- datasets

def strength_text(row: pd.Series) -> str:
    """'batch separation 1.28 (7 shared cell types)', with sysVI's system ratio when the dataset
    has one (several batches per system), or why there is none."""
    if pd.isna(row.get("separation")):
        return f"batch separation n/a: {row.get('note') or 'no shared cell types'}"
    if row.get("n_labels") == 0:
        return f"batch separation {row['separation']:.2f} (unlabelled: all cells as one group)"
    ratio = row.get("system_ratio")
    return (f"batch separation {row['separation']:.2f} ({int(row['n_shared_types'])} shared cell types)"
            + (f"; between- / within-system distance {ratio:.1f}" if pd.notna(ratio) else ""))


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


def unlabelled_note(runs: pd.DataFrame | None) -> str:
    """One line per dataset with unlabelled cells (runs.tsv n_unlabelled): how many, and that the
    label metrics leave them out."""
    if runs is None or "n_unlabelled" not in runs.columns:
        return ""
    counts = pd.to_numeric(runs["n_unlabelled"], errors="coerce").groupby(runs["dataset"]).max()
    lines = [f"<p class=\"rule\">{esc(d)}: {int(n)} cells have no cell-type label (missing, 'nan', '' or "
             "'unknown' in the file); the metrics that need labels leave them out.</p>"
             for d, n in counts.items() if n > 0]
    return "".join(lines)


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
    untested = int(counts.get("direction only (not tested)", 0))
    note = (f" {untested} rows rest on fewer than 3 seeds and are not tested: config/claims.yaml runs every "
            "claim with 3 seeds." if untested else "")
    return f'<p>Papers\' claims (<a href="#claims">section</a>): {esc(text)}.{esc(note)}</p>'


def claims_section(claims: pd.DataFrame | None) -> str:
    """The Claims section: the rule, then one row per claim x dataset, coloured by verdict."""
    if claims is None or claims.empty:
        return '<p class="nodata">no data for claims (claims.tsv not available)</p>'
    cols = [c for c in ["paper", "figure", "quote", "dataset", "selection", "rule", "numbers", "verdict", "evidence",
                        "why"]
            if c in claims.columns]
    classes = claims["verdict"].map(lambda v: f"verdict-{VERDICT_CLASS.get(v, 'na')}")
    return f'<p class="rule">{CLAIMS_TEXT}</p>{simple_table(claims[cols], "table-claims", classes)}'


# methods whose port was run beside the authors' released code: what a reader should know
# before reading the method's scores as the method's (the evidence: a benchmark and a document)
REFERENCE_NOTES = {
    "davae": "DAVAE as released (scbean 0.5.6, run by benchmarks/bench_davae.py) scores the same as this port on "
             "the simulated data, 3 seeds: sim_common3 NMI/ARI 0.14/0.04 released vs 0.18/0.07 port (unintegrated "
             "PCA 0.84/0.70); its released loss lets the residual variance grow without bound, as the port "
             "does. Low DAVAE scores here belong to DAVAE, not to the port: docs/davae_reference.md.",
    "sysvi_scvitools": "scvi-tools' SysVI is not the paper's code: its cycle re-encodes the own-system "
                       "reconstruction and it encodes the system one-hot; sysvi with cycle_input: own_system, "
                       "system_encoding: one_hot, cycle_covariates: real and variant: scvi_tools mixes as it does "
                       "(docs/methods.md).",
}


def reference_notes(runs: pd.DataFrame | None) -> str:
    """Notes on methods of this study whose released code was compared with the port."""
    if runs is None or "method" not in runs.columns:
        return ""
    items = [f"<li><b>{esc(m)}</b>: {esc(text)}</li>" for m, text in REFERENCE_NOTES.items()
             if m in set(runs["method"])]
    return f"<p>Ports and their reference code:</p><ul>{''.join(items)}</ul>" if items else ""


TRUST_CSS = """
.warn { background: #fff4e5; border-left: 4px solid #e67e22; padding: 0.5em 1em; margin: 0.5em 0; }
.rule { color: #444; font-size: 13px; max-width: 1100px; }
tr.verdict-ok td { background: #e8f6e8; } tr.verdict-bad td { background: #fde8e8; }
tr.verdict-na td { color: #666; }
"""
