"""The papers' claims checked on a study's tables (metrics/claims.py): decisions on synthetic
scores with known answers, the Welch test's direction and the Benjamini-Hochberg adjustment."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from metrics import claims as cl


def test_bh_adjustment_matches_the_hand_computation():
    # sorted p 0.005, 0.01, 0.03, 0.04 (m = 4): p * m / rank = 0.02, 0.02, 0.04, 0.04, then the
    # running minimum from the largest rank down; NaN is neither adjusted nor counted
    p = np.array([0.01, 0.04, 0.03, np.nan, 0.005])
    adj = cl.bh_adjust(p)
    assert adj[[0, 1, 2, 4]] == pytest.approx([0.02, 0.04, 0.04, 0.02])
    assert np.isnan(adj[3])
    # the step-up minimum: 0.04 at rank 4 caps rank 3's 0.05
    assert cl.bh_adjust(np.array([0.01, 0.0375, 0.04]))[1] == pytest.approx(0.04)


def test_welch_p_is_one_sided_in_the_claimed_direction():
    a, b = np.array([0.50, 0.52, 0.51]), np.array([0.30, 0.33, 0.31])
    assert cl.welch_p(a, b, cl.GREATER) < 0.01
    assert cl.welch_p(a, b, cl.LESS) > 0.99
    # "not lower" tests whether a is lower: a clearly higher is far from significant
    assert cl.welch_p(a, b, cl.NOT_LOWER) > 0.99
    assert cl.welch_p(np.ones(3), np.zeros(3), cl.GREATER) == 0.0  # no spread: the means decide


def runs(dataset, method, setting, metric_values: dict[str, list[float]], label_missing=0.0):
    n = len(next(iter(metric_values.values())))
    return pd.DataFrame({"dataset": dataset, "method": method, "setting": setting, "seed": range(n),
                         "label_missing": label_missing, "status": "ok", **metric_values})


def best_of(scores: pd.DataFrame, overall: dict[str, float] | None = None) -> pd.DataFrame:
    first = scores[scores["label_missing"] == 0].groupby(["dataset", "method"])["setting"].first().reset_index()
    first = first.rename(columns={"setting": "best_setting"})
    first["overall"] = [(overall or {}).get(m, 0.5) for m in first["method"]]
    first["rank"] = first.groupby("dataset")["overall"].rank(ascending=False)
    return first


def claim_row(table: pd.DataFrame, claim_id: str, dataset: str = "sim") -> pd.Series:
    return table[(table["claim_id"] == claim_id) & (table["dataset"] == dataset)].iloc[0]


def test_sysvi_beats_cvae_with_three_seeds_is_reproduced_with_a_test():
    scores = pd.concat([
        runs("sim", "sysvi", "default", {"ilisi": [0.30, 0.32, 0.31], "nmi_fixed": [0.70, 0.71, 0.69]}),
        runs("sim", "cvae", "kl_weight-1", {"ilisi": [0.05, 0.06, 0.04], "nmi_fixed": [0.72, 0.70, 0.71]}),
    ])
    table, tests = cl.evaluate(cl.Study(scores, best_of(scores)))
    row = claim_row(table, "sysvi_cyc_vamp_vs_cvae")
    assert row["verdict"] == cl.REPRODUCED
    assert row["evidence"].startswith("Welch")
    assert "ilisi: sysvi 0.310 ± 0.010 vs cvae 0.050 ± 0.010 (n 3/3, p_adj" in row["numbers"]
    t = tests[(tests["claim_id"] == "sysvi_cyc_vamp_vs_cvae") & (tests["metric"] == "ilisi")].iloc[0]
    assert t["tested"] and t["p_adj"] < 0.01 and t["holds"]
    # vamp is absent: that claim is not testable, and says why
    vamp = claim_row(table, "sysvi_vamp_vs_cvae")
    assert vamp["verdict"] == cl.NOT_TESTABLE and "no vamp runs" in vamp["why"]


def test_lower_bio_or_no_batch_gain_is_not_reproduced():
    scores = pd.concat([
        runs("sim", "sysvi", "default", {"ilisi": [0.30, 0.32, 0.31], "nmi_fixed": [0.40, 0.41, 0.39]}),
        runs("sim", "cvae", "default", {"ilisi": [0.05, 0.06, 0.04], "nmi_fixed": [0.72, 0.70, 0.71]}),
    ])
    row = claim_row(cl.evaluate(cl.Study(scores, best_of(scores)))[0], "sysvi_cyc_vamp_vs_cvae")
    assert row["verdict"] == cl.NOT_REPRODUCED and row["why"].startswith("nmi_fixed: sysvi default is lower than cvae default")


def test_two_seeds_decide_on_means_only_and_say_so():
    scores = pd.concat([
        runs("sim", "sysvi", "default", {"ilisi": [0.30, 0.32], "nmi_fixed": [0.68, 0.69]}),
        runs("sim", "cvae", "default", {"ilisi": [0.05, 0.06], "nmi_fixed": [0.72, 0.70]}),
    ])
    table, tests = cl.evaluate(cl.Study(scores, best_of(scores)))
    row = claim_row(table, "sysvi_cyc_vamp_vs_cvae")
    # NMI fixed 0.685 vs 0.71: within the 0.05 tolerance of "comparable"
    assert row["verdict"] == cl.REPRODUCED and row["evidence"].startswith("means only")
    assert tests["p_value"].isna().all() and not tests["tested"].any()


def test_kl_weight_claim_compares_kl_one_with_the_highest_kl():
    scores = pd.concat([
        runs("sim", "cvae", "kl_weight-1", {"ilisi": [0.10, 0.11, 0.12], "nmi_fixed": [0.80, 0.81, 0.79]}),
        runs("sim", "cvae", "kl_weight-5", {"ilisi": [0.20, 0.21, 0.19], "nmi_fixed": [0.60, 0.62, 0.61]}),
        runs("sim", "cvae", "kl_weight-2", {"ilisi": [0.0, 0.0, 0.0], "nmi_fixed": [0.9, 0.9, 0.9]}),
    ])
    table, tests = cl.evaluate(cl.Study(scores, best_of(scores)))
    row = claim_row(table, "sysvi_kl_weight")
    assert row["verdict"] == cl.REPRODUCED
    kl = tests[tests["claim_id"] == "sysvi_kl_weight"]
    assert set(kl["setting_a"]) == {"kl_weight-5"} and set(kl["setting_b"]) == {"kl_weight-1"}
    assert "scaled embedding" in row["why"]  # the part of Fig. 2a not tested here is named
    only_one = scores[scores["setting"] == "kl_weight-1"]
    row = claim_row(cl.evaluate(cl.Study(only_one, best_of(only_one)))[0], "sysvi_kl_weight")
    assert row["verdict"] == cl.NOT_TESTABLE and "kl_weight" in row["why"]


def test_adv_claim_needs_batch_unique_cell_types():
    with_unique = pd.concat([
        runs("sim", "cyc", "default", {"jaccard_batch_unique": [0.8, 0.82, 0.81]}),
        runs("sim", "adv", "default", {"jaccard_batch_unique": [0.5, 0.52, 0.49]}),
    ])
    row = claim_row(cl.evaluate(cl.Study(with_unique, best_of(with_unique)))[0], "sysvi_adv_mixes_unique_types")
    assert row["verdict"] == cl.REPRODUCED
    without = with_unique.assign(jaccard_batch_unique=np.nan)
    row = claim_row(cl.evaluate(cl.Study(without, best_of(without)))[0], "sysvi_adv_mixes_unique_types")
    assert row["verdict"] == cl.NOT_TESTABLE and "jaccard_batch_unique" in row["why"]


def test_missing_label_claim_uses_each_share_between_20_and_50_percent():
    parts = []
    for share, (sup, anvi) in {0.2: ([0.9, 0.91, 0.92], [0.7, 0.71, 0.69]),
                               0.5: ([0.6, 0.61, 0.62], [0.8, 0.81, 0.79])}.items():
        parts.append(runs("sim", "scdreamer_sup", f"label_missing-{share:g}", {"macro_f1": sup}, share))
        parts.append(runs("sim", "scanvi", f"label_missing-{share:g}", {"macro_f1": anvi}, share))
    parts += [runs("sim", m, "default", {"macro_f1": [np.nan] * 3}) for m in ("scdreamer_sup", "scanvi")]
    scores = pd.concat(parts)
    table, tests = cl.evaluate(cl.Study(scores, best_of(scores)))
    row = claim_row(table, "scdreamer_sup_vs_scanvi")
    assert row["verdict"] == cl.NOT_REPRODUCED  # holds at 20 %, fails at 50 %
    mf = tests[tests["claim_id"] == "scdreamer_sup_vs_scanvi"].set_index("label_missing")["holds"]
    assert bool(mf[0.2]) and not bool(mf[0.5])
    assert "[50% labels missing]" in row["numbers"]


def test_davae_claim_against_the_baselines_present():
    metrics = ["ari", "one_minus_ari_batch", "kbet_acceptance"]
    scores = pd.concat([
        runs("sim", "davae", "default", {m: [0.8, 0.81, 0.79] for m in metrics}),
        runs("sim", "scanorama", "default", {m: [0.5, 0.52, 0.51] for m in metrics}),
    ])
    table, tests = cl.evaluate(cl.Study(scores, best_of(scores)))
    row = claim_row(table, "davae_vs_baselines")
    assert row["verdict"] == cl.REPRODUCED and "DESC" in row["why"]
    assert set(tests[tests["claim_id"] == "davae_vs_baselines"]["method_b"]) == {"scanorama"}


def test_sccraft_rank_claim_only_on_simulated_datasets():
    scores = pd.concat([runs(d, m, "default", {"nmi": [0.5]}) for d in ("sim", "real")
                        for m in ("sccraft", "harmony", "scvi")])
    best = best_of(scores, {"sccraft": 0.9, "harmony": 0.5, "scvi": 0.4})
    datasets = pd.DataFrame({"dataset": ["sim", "real"], "source": ["simulated: common-3", "registry pancreas"]})
    table = cl.evaluate(cl.Study(scores, best, datasets))[0]
    assert claim_row(table, "sccraft_leads_simulations", "sim")["verdict"] == cl.REPRODUCED
    real = claim_row(table, "sccraft_leads_simulations", "real")
    assert real["verdict"] == cl.NOT_TESTABLE and "not a simulated" in real["why"]
    best.loc[best["method"] == "harmony", "overall"] = 0.95
    row = claim_row(cl.evaluate(cl.Study(scores, best, datasets))[0], "sccraft_leads_simulations", "sim")
    assert row["verdict"] == cl.NOT_REPRODUCED and "harmony ranks first" in row["why"]


def test_cli_writes_claims_from_the_tables(tmp_path):
    scores = pd.concat([
        runs("sim", "sysvi", "default", {"ilisi": [0.30, 0.32, 0.31], "nmi_fixed": [0.70, 0.71, 0.69]}),
        runs("sim", "cvae", "default", {"ilisi": [0.05, 0.06, 0.04], "nmi_fixed": [0.72, 0.70, 0.71]}),
    ])
    scores.to_csv(tmp_path / "scores.tsv", sep="\t", index=False)
    best_of(scores).to_csv(tmp_path / "best.tsv", sep="\t", index=False)
    assert cl.main(["--tables", str(tmp_path)]) == 0
    table = pd.read_csv(tmp_path / "claims.tsv", sep="\t")
    assert set(table["claim_id"]) == {c.claim_id for c in cl.CLAIMS}
    assert (tmp_path / "claim_tests.tsv").exists()
    (tmp_path / "best.tsv").unlink()
    assert cl.main(["--tables", str(tmp_path)]) == 2
