"""The seed papers' qualitative claims, checked on this study's tables.

    python -m metrics.claims --tables OUT/tables

Reads scores.tsv (one row per run), best.tsv (best setting per dataset x method) and, when
present, batch_strength.tsv (which datasets are simulated); writes claims.tsv (one row per
claim x dataset: paper, figure, claim, decision rule, our numbers, verdict, why) and
claim_tests.tsv (one row per comparison behind a verdict).

A comparison puts the per-seed values of one metric for two (method, setting) pairs side by
side. With at least ``MIN_SEEDS`` successful seeds on both sides it is tested with a
one-sided Welch t-test in the claimed direction, and the p-values are adjusted with
Benjamini-Hochberg per dataset x metric (sysVI's procedure: Welch's t-test, BH correction
per dataset and metric, adjusted p < 0.1; sysVI used the two-stage BH variant, plain BH here
is the more conservative of the two). With fewer seeds only the means are compared and the
row says so. A claim is "reproduced" when every comparison of its row holds, "not
reproduced" when one does not, and "not testable here" when the study lacks a method,
setting, metric or scenario the claim needs (the row says which).
"""

from __future__ import annotations

import argparse
import re
import sys
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

ALPHA = 0.1  # sysVI: adjusted p < 0.1
MIN_SEEDS = 3
SIMILAR_TOLERANCE = 0.05  # means-only "comparable": at most this much lower (metrics lie in [0, 1])

REPRODUCED = "reproduced"
NOT_REPRODUCED = "not reproduced"
NOT_TESTABLE = "not testable here"

CLAIM_COLUMNS = ["claim_id", "paper", "figure", "claim", "dataset", "rule", "numbers", "verdict", "evidence", "why"]
TEST_COLUMNS = ["claim_id", "dataset", "metric", "label_missing", "method_a", "setting_a", "n_a", "mean_a", "sd_a",
                "method_b", "setting_b", "n_b", "mean_b", "sd_b", "expected", "p_value", "p_adj", "tested",
                "holds"]

# expected relation of a's values to b's, and how a comparison that fails it reads
GREATER, LESS, NOT_LOWER = "greater", "less", "not lower"
FAILED_RELATION = {GREATER: "is not higher than", LESS: "is not lower than", NOT_LOWER: "is lower than"}


@dataclass
class Comparison:
    """One metric, two (method, setting) pairs on one dataset, and the claimed relation."""

    metric: str
    method_a: str
    setting_a: str
    method_b: str
    setting_b: str
    expected: str
    label_missing: float = 0.0
    values_a: np.ndarray = field(default_factory=lambda: np.array([]))
    values_b: np.ndarray = field(default_factory=lambda: np.array([]))
    p_value: float = float("nan")
    p_adj: float = float("nan")

    @property
    def tested(self) -> bool:
        return min(self.values_a.size, self.values_b.size) >= MIN_SEEDS

    def holds(self) -> bool:
        """Whether the claimed relation holds (significance when tested, else the means)."""
        a, b = self.values_a.mean(), self.values_b.mean()
        if self.expected == NOT_LOWER:  # comparable: not significantly (or not much) lower
            return bool(not (self.p_adj < ALPHA) if self.tested else a >= b - SIMILAR_TOLERANCE)
        direction = a > b if self.expected == GREATER else a < b
        return bool(direction and (self.p_adj < ALPHA if self.tested else True))

    def text(self) -> str:
        """'ilisi: sysvi 0.21 ± 0.01 vs cvae 0.05 ± 0.02 (n 3/3, p_adj 0.003)'."""
        lm = f" [{self.label_missing:.0%} labels missing]" if self.label_missing else ""
        test = f", p_adj {self.p_adj:.3g}" if self.tested else ", means only"
        return (f"{self.metric}{lm}: {self.method_a} {fmt(self.values_a)} vs {self.method_b} {fmt(self.values_b)} "
                f"(n {self.values_a.size}/{self.values_b.size}{test})")


def fmt(values: np.ndarray) -> str:
    """'mean ± sd' over seeds (sd left out for one seed)."""
    if values.size == 0:
        return "n/a"
    if values.size == 1:
        return f"{values[0]:.3f}"
    return f"{values.mean():.3f} ± {values.std(ddof=1):.3f}"


def welch_p(a: np.ndarray, b: np.ndarray, expected: str) -> float:
    """One-sided Welch t-test p-value of the claimed direction (NOT_LOWER tests 'a lower')."""
    from scipy.stats import ttest_ind

    alternative = {GREATER: "greater", LESS: "less", NOT_LOWER: "less"}[expected]
    if np.var(a) == 0 and np.var(b) == 0:  # no spread at all: the means decide
        differs = {"greater": a.mean() > b.mean(), "less": a.mean() < b.mean()}[alternative]
        return 0.0 if differs else 1.0
    with warnings.catch_warnings():  # near-identical values: scipy warns, the p-value is still usable
        warnings.simplefilter("ignore", RuntimeWarning)
        return float(ttest_ind(a, b, equal_var=False, alternative=alternative).pvalue)


def bh_adjust(p: np.ndarray) -> np.ndarray:
    """Benjamini-Hochberg adjusted p-values; NaN entries stay NaN and are not counted."""
    from scipy.stats import false_discovery_control

    p = np.asarray(p, dtype=float)
    out = np.full(p.shape, np.nan)
    ok = np.isfinite(p)
    if ok.any():
        out[ok] = false_discovery_control(p[ok], method="bh")
    return out


# ----------------------------------------------------------------------------- reading the tables

class Study:
    """The tables a claim reads, with lookups by dataset, method and setting."""

    def __init__(self, scores: pd.DataFrame, best: pd.DataFrame, datasets: pd.DataFrame | None = None):
        self.scores = scores
        self.best = best
        self.datasets = datasets if datasets is not None else pd.DataFrame(columns=["dataset", "source"])

    def dataset_names(self) -> list[str]:
        return sorted(self.scores["dataset"].dropna().unique()) if len(self.scores) else []

    def methods(self, dataset: str) -> set[str]:
        return set(self.scores.loc[self.scores["dataset"] == dataset, "method"])

    def best_setting(self, dataset: str, method: str) -> str | None:
        row = self.best[(self.best["dataset"] == dataset) & (self.best["method"] == method)]
        if row.empty or pd.isna(row["best_setting"].iloc[0]):
            return None
        return str(row["best_setting"].iloc[0])

    def settings(self, dataset: str, method: str) -> list[str]:
        s = self.scores[(self.scores["dataset"] == dataset) & (self.scores["method"] == method)]
        return sorted(s.loc[s["label_missing"].fillna(0) == 0, "setting"].unique())

    def values(self, dataset: str, method: str, setting: str, metric: str, label_missing: float = 0.0) -> np.ndarray:
        """Per-seed values of ``metric`` of the successful runs (NaN metrics dropped)."""
        if metric not in self.scores.columns:
            return np.array([])
        s = self.scores
        sel = s[(s["dataset"] == dataset) & (s["method"] == method) & (s["setting"] == setting)
                & (s["status"] == "ok") & np.isclose(s["label_missing"].fillna(0), label_missing)]
        v = pd.to_numeric(sel[metric], errors="coerce").to_numpy(dtype=float)
        return v[np.isfinite(v)]

    def simulated(self, dataset: str) -> bool | None:
        """Whether a dataset comes from the simulator (None when batch_strength.tsv is absent)."""
        row = self.datasets[self.datasets["dataset"] == dataset]
        if row.empty:
            return None
        return str(row["source"].iloc[0]).startswith("simulated")


def setting_params(slug: str) -> dict[str, str]:
    """'kl_weight-5__n_latent-10' -> {'kl_weight': '5', 'n_latent': '10'} ('default' -> {})."""
    if slug == "default":
        return {}
    return dict(part.split("-", 1) for part in slug.split("__") if "-" in part)


def base_setting(slug: str) -> str:
    """The setting a label_missing run was derived from ('x__label_missing-0.2' -> 'x')."""
    base = re.sub(r"(^|__)label_missing-[0-9.e+-]+$", "", slug)
    return base or "default"


# ----------------------------------------------------------------------------- the claims

@dataclass
class Claim:
    """A paper's claim: where it comes from, its rule, and how to build its comparisons."""

    claim_id: str
    paper: str
    figure: str
    text: str
    rule: str
    comparisons: Callable[[Study, str], tuple[list[Comparison], str]] | None  # -> (comparisons, why not testable)
    note: str = ""  # what of the claim this study cannot test, said on every row
    ranked: Callable[[Study, str], tuple[str, str, str, str]] | None = None  # claims decided on ranks instead


def best_vs_best(metric_expect: list[tuple[str, str]], a: str, b: str):
    """Comparisons of method a's best setting with method b's, one per (metric, expected)."""
    def build(study: Study, dataset: str) -> tuple[list[Comparison], str]:
        missing = [m for m in (a, b) if m not in study.methods(dataset)]
        if missing:
            return [], f"the study has no {' and no '.join(missing)} runs on this dataset"
        sa, sb = study.best_setting(dataset, a), study.best_setting(dataset, b)
        if sa is None or sb is None:
            return [], f"every run of {a if sa is None else b} failed"
        return [Comparison(m, a, sa, b, sb, e) for m, e in metric_expect], ""
    return build


def kl_weight_pair(study: Study, dataset: str) -> tuple[list[Comparison], str]:
    """cvae at kl_weight 1 vs its highest kl_weight (other parameters equal)."""
    if "cvae" not in study.methods(dataset):
        return [], "the study has no cvae runs on this dataset"
    parsed = {s: setting_params(s) for s in study.settings(dataset, "cvae")}
    with_kl = {s: p for s, p in parsed.items() if "kl_weight" in p}
    for low, p_low in with_kl.items():
        if float(p_low["kl_weight"]) != 1.0:
            continue
        rest = {k: v for k, v in p_low.items() if k != "kl_weight"}
        higher = [(float(p["kl_weight"]), s) for s, p in with_kl.items()
                  if float(p["kl_weight"]) > 1 and {k: v for k, v in p.items() if k != "kl_weight"} == rest]
        if higher:
            high = max(higher)[1]
            return [Comparison("ilisi", "cvae", high, "cvae", low, GREATER),
                    Comparison("nmi_fixed", "cvae", high, "cvae", low, LESS)], ""
    return [], "needs cvae settings kl_weight-1 and a higher kl_weight (grid: {kl_weight: [1, 5]})"


def missing_label_pairs(study: Study, dataset: str) -> tuple[list[Comparison], str]:
    """scdreamer_sup vs scanvi macro-F1 at each share of hidden labels in [0.2, 0.5]."""
    missing = [m for m in ("scdreamer_sup", "scanvi") if m not in study.methods(dataset)]
    if missing:
        return [], f"the study has no {' and no '.join(missing)} runs on this dataset"
    s = study.scores[study.scores["dataset"] == dataset]
    shares = sorted(x for x in s["label_missing"].dropna().unique() if 0.2 - 1e-9 <= x <= 0.5 + 1e-9)
    if not shares:
        return [], "needs label_missing shares between 0.2 and 0.5 (config label_missing)"
    out = []
    for share in shares:
        pair = []
        for method in ("scdreamer_sup", "scanvi"):
            best = study.best_setting(dataset, method) or "default"
            rows = s[(s["method"] == method) & np.isclose(s["label_missing"], share)]
            match = [x for x in rows["setting"].unique() if base_setting(x) == best]
            pair.append(match[0] if match else None)
        if None not in pair:
            out.append(Comparison("macro_f1", "scdreamer_sup", pair[0], "scanvi", pair[1], GREATER,
                                  label_missing=float(share)))
    return (out, "") if out else ([], "no runs of both methods at a shared label_missing share")


def davae_pairs(study: Study, dataset: str) -> tuple[list[Comparison], str]:
    """davae vs Scanorama and Seurat v3 (CCA) on ARI, 1-ARI(batch) and kBET acceptance."""
    if "davae" not in study.methods(dataset):
        return [], "the study has no davae runs on this dataset"
    baselines = [b for b in ("scanorama", "seurat_cca") if b in study.methods(dataset)]
    if not baselines:
        return [], "needs scanorama or seurat_cca (the preprint's baselines; DESC is not in this benchmark)"
    out = []
    for b in baselines:
        comps, why = best_vs_best([("ari", GREATER), ("one_minus_ari_batch", GREATER),
                                   ("kbet_acceptance", GREATER)], "davae", b)(study, dataset)
        if why:
            return [], why
        out += comps
    return out, ""


def check_sccraft(study: Study, dataset: str) -> tuple[str, str, str, str]:
    """(verdict, numbers, evidence, why) of the scCRAFT rank claim on one dataset."""
    sim = study.simulated(dataset)
    if sim is False:
        return NOT_TESTABLE, "", "", "not a simulated (Splatter) dataset"
    if sim is None:
        return NOT_TESTABLE, "", "", "batch_strength.tsv absent: cannot tell whether the dataset is simulated"
    if "sccraft" not in study.methods(dataset):
        return NOT_TESTABLE, "", "", "the study has no sccraft runs on this dataset"
    b = study.best[study.best["dataset"] == dataset].dropna(subset=["overall"])
    if "sccraft" not in set(b["method"]):
        return NOT_TESTABLE, "", "", "every run of sccraft failed on this dataset"
    if len(b) < 3:
        return NOT_TESTABLE, "", "", f"only {len(b)} methods scored on this dataset (need 3 to rank)"
    b = b.sort_values("overall", ascending=False)
    top = b.iloc[0]
    me = b[b["method"] == "sccraft"].iloc[0]
    numbers = (f"overall: sccraft {me['overall']:.3f} (rank {int(me['rank'])} of {len(b)}); "
               f"first: {top['method']} {top['overall']:.3f}")
    verdict = REPRODUCED if top["method"] == "sccraft" else NOT_REPRODUCED
    why = "" if verdict == REPRODUCED else f"{top['method']} ranks first"
    return verdict, numbers, "means only (ranks of seed means)", why


CLAIMS: list[Claim] = [
    Claim("sysvi_cyc_vamp_vs_cvae", "sysVI (Hrovatin et al. 2025)", "Fig. 5a, Suppl. Table S2",
          "VAMP + CYC (sysvi) corrects batch effects better than the cVAE baseline (iLISI) at comparable cell-type "
          "preservation (NMI fixed)",
          "best settings: iLISI(sysvi) > iLISI(cvae) and NMI fixed(sysvi) not lower than NMI fixed(cvae)",
          best_vs_best([("ilisi", GREATER), ("nmi_fixed", NOT_LOWER)], "sysvi", "cvae"),
          note="sysvi runs the paper runs' cycle distance (cycle_distance: mse_standard, latent means standardised "
               "jointly); on the simulated common-3 data it barely mixed (iLISI 0.02 and 0.05, seeds 0 and 1), "
               "with the raw-mean distance (cycle_distance: mse, the module default of the paper code) iLISI 0.89 "
               "(seed 0): config/ablations.yaml runs both"),
    Claim("sysvi_vamp_vs_cvae", "sysVI (Hrovatin et al. 2025)", "Fig. 3, Suppl. Fig. S1",
          "the VampPrior (vamp) raises batch correction (iLISI) over the standard-prior cVAE at similar "
          "cell-type preservation (NMI fixed)",
          "best settings: iLISI(vamp) > iLISI(cvae) and NMI fixed(vamp) not lower than NMI fixed(cvae)",
          best_vs_best([("ilisi", GREATER), ("nmi_fixed", NOT_LOWER)], "vamp", "cvae")),
    Claim("sysvi_kl_weight", "sysVI (Hrovatin et al. 2025)", "Fig. 2a",
          "a higher cVAE KL weight trades cell-type preservation for batch correction",
          "cvae at its highest kl_weight vs kl_weight 1: iLISI higher and NMI fixed lower",
          kl_weight_pair,
          note="the figure's second point (the iLISI gain vanishes on standard-scaled embedding features, i.e. "
               "no better mixing) needs the embeddings re-scored after scaling: not tested here"),
    Claim("sysvi_adv_mixes_unique_types", "sysVI (Hrovatin et al. 2025)", "Fig. 4, Fig. 2b-c",
          "adversarial alignment (adv) mixes cell types that exist in one batch only more than "
          "cycle-consistency (cyc)",
          "best settings: Jaccard of the batch-unique cell types (jaccard_batch_unique) higher for cyc than adv",
          best_vs_best([("jaccard_batch_unique", GREATER)], "cyc", "adv")),
    Claim("sccraft_leads_simulations", "scCRAFT (He et al. 2025)", "Fig. 2b",
          "scCRAFT has the best overall integration score on the Splatter simulation scenarios",
          "sccraft ranks first by the across-method composite (best.tsv rank) on the simulated dataset "
          "(seed means; no test: the composite is scaled across methods)",
          None, ranked=check_sccraft,
          note="the composite is this study's metric set and weights (config metrics.set), not scCRAFT's own"),
    Claim("scdreamer_sup_vs_scanvi", "scDREAMER (Shree et al. 2023)", "Fig. 5",
          "scDREAMER-Sup predicts the hidden cell-type labels better than scANVI with 20-50 % of labels missing",
          "macro-F1 of the hidden cells higher for scdreamer_sup than scanvi at every share in [0.2, 0.5]",
          missing_label_pairs),
    Claim("davae_vs_baselines", "DAVAE (Hu et al., preprint)", "Fig. 2f-g, Fig. 3f-g",
          "DAVAE beats Scanorama and Seurat v3 in cell-type ARI and 1 - ARI(batch), and has the higher kBET "
          "acceptance",
          "best settings: ARI, 1 - ARI(batch) and kBET acceptance (5-25 % neighbourhoods) of davae higher than "
          "each of scanorama and seurat_cca present",
          davae_pairs,
          note="DESC, the preprint's third baseline, is not in this benchmark"),
]


# ----------------------------------------------------------------------------- evaluation

def evaluate(study: Study) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(claims.tsv, claim_tests.tsv) of a study."""
    datasets = study.dataset_names()
    built: list[tuple[Claim, str, list[Comparison], str]] = []
    for claim in CLAIMS:
        for dataset in datasets:
            comps, why = claim.comparisons(study, dataset) if claim.comparisons else ([], "")
            for c in comps:
                c.values_a = study.values(dataset, c.method_a, c.setting_a, c.metric, c.label_missing)
                c.values_b = study.values(dataset, c.method_b, c.setting_b, c.metric, c.label_missing)
            built.append((claim, dataset, comps, why))
    tests = [(d, c) for _, d, comps, _ in built for c in comps if c.values_a.size and c.values_b.size]
    for _, c in tests:
        if c.tested:
            c.p_value = welch_p(c.values_a, c.values_b, c.expected)
    # BH per dataset x metric, over the tested comparisons of every claim (sysVI: per dataset and metric)
    families: dict[tuple[str, str], list[Comparison]] = {}
    for d, c in tests:
        if c.tested:
            families.setdefault((d, c.metric), []).append(c)
    for family in families.values():
        for c, q in zip(family, bh_adjust(np.array([c.p_value for c in family]))):
            c.p_adj = float(q)
    claim_rows, test_rows = [], []
    for claim, dataset, comps, why in built:
        row = {"claim_id": claim.claim_id, "paper": claim.paper, "figure": claim.figure, "claim": claim.text,
               "dataset": dataset, "rule": claim.rule}
        if claim.ranked:
            verdict, numbers, evidence, why = claim.ranked(study, dataset)
        else:
            verdict, numbers, evidence, why = decide(comps, why)
        why = "; ".join(x for x in (why, claim.note) if x)
        claim_rows.append({**row, "numbers": numbers, "verdict": verdict, "evidence": evidence, "why": why})
        for c in comps:
            test_rows.append({
                "claim_id": claim.claim_id, "dataset": dataset, "metric": c.metric, "label_missing": c.label_missing,
                "method_a": c.method_a, "setting_a": c.setting_a, "n_a": c.values_a.size,
                "mean_a": c.values_a.mean() if c.values_a.size else np.nan,
                "sd_a": c.values_a.std(ddof=1) if c.values_a.size > 1 else np.nan,
                "method_b": c.method_b, "setting_b": c.setting_b, "n_b": c.values_b.size,
                "mean_b": c.values_b.mean() if c.values_b.size else np.nan,
                "sd_b": c.values_b.std(ddof=1) if c.values_b.size > 1 else np.nan,
                "expected": c.expected, "p_value": c.p_value, "p_adj": c.p_adj, "tested": c.tested,
                "holds": c.holds() if c.values_a.size and c.values_b.size else np.nan})
    if not datasets:
        claim_rows = [{"claim_id": c.claim_id, "paper": c.paper, "figure": c.figure, "claim": c.text,
                       "dataset": "", "rule": c.rule, "numbers": "", "verdict": NOT_TESTABLE, "evidence": "",
                       "why": "no scored runs"} for c in CLAIMS]
    return pd.DataFrame(claim_rows, columns=CLAIM_COLUMNS), pd.DataFrame(test_rows, columns=TEST_COLUMNS)


def decide(comps: list[Comparison], why_not: str) -> tuple[str, str, str, str]:
    """(verdict, numbers, evidence, why) of one claim x dataset from its comparisons."""
    if not comps:
        return NOT_TESTABLE, "", "", why_not
    empty = [c for c in comps if not (c.values_a.size and c.values_b.size)]
    if empty:
        c = empty[0]
        side = f"{c.method_a} {c.setting_a}" if not c.values_a.size else f"{c.method_b} {c.setting_b}"
        return NOT_TESTABLE, "", "", f"no successful run with a {c.metric} value for {side}"
    numbers = "; ".join(c.text() for c in comps)
    n_tested = sum(c.tested for c in comps)
    evidence = (f"Welch t-test (one-sided), BH-adjusted p < {ALPHA:g}" if n_tested == len(comps)
                else f"means only (fewer than {MIN_SEEDS} seeds)" if n_tested == 0
                else f"mixed: {n_tested} of {len(comps)} comparisons tested, the rest means only")
    failing = [c for c in comps if not c.holds()]
    if not failing:
        return REPRODUCED, numbers, evidence, ""
    why = "; ".join(f"{c.metric}: {c.method_a} {c.setting_a} {FAILED_RELATION[c.expected]} {c.method_b} {c.setting_b}"
                    + (f" (p_adj {c.p_adj:.3g})" if c.tested else "") for c in failing)
    return NOT_REPRODUCED, numbers, evidence, why


def read_tsv(path: Path) -> pd.DataFrame:
    ids = {c: str for c in ("dataset", "method", "setting", "best_setting", "status", "source")}
    return pd.read_csv(path, sep="\t", dtype=ids)


def main(argv: list[str] | None = None) -> int:
    from metrics.aggregate import write_table

    parser = argparse.ArgumentParser(prog="python -m metrics.claims", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tables", required=True, help="folder with scores.tsv and best.tsv")
    args = parser.parse_args(argv)
    folder = Path(args.tables)
    for name in ("scores.tsv", "best.tsv"):
        if not (folder / name).exists():
            print(f"error: {folder / name} does not exist (run the aggregate step first)", file=sys.stderr)
            return 2
    strength = folder / "batch_strength.tsv"
    study = Study(read_tsv(folder / "scores.tsv"), read_tsv(folder / "best.tsv"),
                  read_tsv(strength) if strength.exists() else None)
    claims, tests = evaluate(study)
    write_table(tests, folder / "claim_tests.tsv")
    write_table(claims, folder / "claims.tsv")
    counts = claims["verdict"].value_counts().to_dict()
    print(f"{len(claims)} claim rows: {counts}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    from guards.cli import guarded

    sys.exit(guarded("python -m metrics.claims", main))
