"""The papers' claims checked on a study's tables (metrics/claims.py): decisions on synthetic
scores with known answers, the two-sided Welch and TOST tests, the two-stage BH adjustment,
each paper's selection, the data each claim needs and the runs that did not train."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from metrics import claims as cl

SYSTEMS = pd.DataFrame({"dataset": ["sys"], "source": ["simulated: systems"]})


def test_two_stage_bh_is_statsmodels_tsbh_and_no_laxer_than_bh_here():
    from statsmodels.stats.multitest import multipletests

    p = np.array([0.01, 0.04, 0.03, np.nan, 0.005])
    adj = cl.adjust(p)
    assert np.isnan(adj[3])
    assert adj[[0, 1, 2, 4]] == pytest.approx(multipletests(p[[0, 1, 2, 4]], alpha=0.1, method="fdr_tsbh")[1])
    # plain BH for comparison: sorted p * m / rank = 0.02, 0.02, 0.04, 0.04
    assert cl.ALPHA == 0.1 and cl.BH_METHOD == "fdr_tsbh"


def test_welch_is_two_sided_and_tost_needs_the_means_within_the_margin():
    a, b = np.array([0.50, 0.52, 0.51]), np.array([0.30, 0.33, 0.31])
    assert cl.welch_p(a, b) < 0.01 and cl.welch_p(a, b) == pytest.approx(cl.welch_p(b, a))  # no direction built in
    assert cl.welch_p(np.ones(3), np.zeros(3)) == 0.0  # no spread: the means decide
    close = np.array([0.70, 0.71, 0.69])
    assert cl.tost_p(close, close + 0.005) < 0.05  # 0.005 apart, sd 0.01: equivalent within 0.05
    assert cl.tost_p(a, b) > 0.5  # 0.2 apart: far from equivalent
    # a larger spread makes equivalence harder to show (a failing difference test would make it easier)
    noisy = np.array([0.60, 0.80, 0.70])
    assert cl.tost_p(noisy, noisy + 0.005) > cl.tost_p(close, close + 0.005)


def runs(dataset, method, setting, metric_values: dict[str, list[float]], label_missing=0.0):
    n = len(next(iter(metric_values.values())))
    return pd.DataFrame({"dataset": dataset, "method": method, "setting": setting, "seed": range(n),
                         "label_missing": label_missing, "status": "ok", **metric_values})


def best_of(scores: pd.DataFrame, overall: dict[str, float] | None = None) -> pd.DataFrame:
    first = scores[scores["label_missing"] == 0].groupby(["dataset", "method"])["setting"].first().reset_index()
    first = first.rename(columns={"setting": "best_setting"})
    first["overall"] = [(overall or {}).get(m, 0.5) for m in first["method"]]
    return first


def claim_row(table: pd.DataFrame, claim_id: str, dataset: str = "sys") -> pd.Series:
    return table[(table["claim_id"] == claim_id) & (table["dataset"] == dataset)].iloc[0]


def sysvi_vs_cvae(n_seeds=3, nmi_sysvi=(0.70, 0.71, 0.69)):
    return pd.concat([
        runs("sys", "sysvi", "cycle_weight-5", {"ilisi_shared": [0.30, 0.32, 0.31][:n_seeds],
                                                "ilisi": [0.30, 0.32, 0.31][:n_seeds],
                                                "nmi_fixed": list(nmi_sysvi)[:n_seeds],
                                                "moransi": [0.50, 0.51, 0.49][:n_seeds]}),
        runs("sys", "cvae", "kl_weight-1", {"ilisi_shared": [0.05, 0.06, 0.04][:n_seeds],
                                            "ilisi": [0.05, 0.06, 0.04][:n_seeds],
                                            "nmi_fixed": [0.705, 0.70, 0.71][:n_seeds],
                                            "moransi": [0.50, 0.505, 0.495][:n_seeds]}),
    ])


def test_sysvi_beats_cvae_with_three_seeds_is_reproduced_with_tests():
    scores = sysvi_vs_cvae()
    table, tests = cl.evaluate(cl.Study(scores, best_of(scores), SYSTEMS))
    row = claim_row(table, "sysvi_vs_cvae")
    assert row["verdict"] == cl.REPRODUCED, row["why"]
    assert "two-stage BH" in row["evidence"] and "significantly higher batch correction" in row["quote"]
    assert "ilisi_shared: sysvi 0.310 ± 0.010 vs cvae 0.050 ± 0.010 (n 3/3, Welch, two-sided p_adj" in row["numbers"]
    t = tests[(tests["claim_id"] == "sysvi_vs_cvae")].set_index("metric")
    assert t.loc["nmi_fixed", "test"] == "TOST (Welch)" and t.loc["nmi_fixed", "margin"] == cl.EQUIVALENCE_MARGIN
    assert bool(t["holds"].all())
    vamp = claim_row(table, "sysvi_vamp_vs_cvae")  # vamp is absent: not testable, and says why
    assert vamp["verdict"] == cl.NOT_TESTABLE and "no vamp runs" in vamp["why"]


def test_lower_bio_is_not_reproduced_and_says_how():
    scores = sysvi_vs_cvae(nmi_sysvi=(0.40, 0.41, 0.39))
    row = claim_row(cl.evaluate(cl.Study(scores, best_of(scores), SYSTEMS))[0], "sysvi_vs_cvae")
    assert row["verdict"] == cl.NOT_REPRODUCED
    assert row["why"].startswith("nmi_fixed: sysvi cycle_weight-5 not shown comparable to cvae kl_weight-1 (TOST")


def test_fewer_than_three_seeds_is_direction_only_never_reproduced():
    scores = sysvi_vs_cvae(n_seeds=1)
    table, tests = cl.evaluate(cl.Study(scores, best_of(scores), SYSTEMS))
    row = claim_row(table, "sysvi_vs_cvae")
    assert row["verdict"] == cl.DIRECTION_ONLY
    assert row["why"] == "the means point the claimed way" and "needs 3" in row["evidence"]
    assert tests["p_value"].isna().all() and not tests["tested"].any()
    flipped = sysvi_vs_cvae(n_seeds=1).replace({"sysvi": "cvae_", "cvae": "sysvi"}).replace({"cvae_": "cvae"})
    row = claim_row(cl.evaluate(cl.Study(flipped, best_of(flipped), SYSTEMS))[0], "sysvi_vs_cvae")
    assert row["verdict"] == cl.DIRECTION_ONLY and "do not point" in row["why"]


def test_a_run_that_did_not_train_makes_the_row_not_testable():
    scores = sysvi_vs_cvae()
    run_table = scores[["dataset", "method", "setting", "seed", "label_missing"]].assign(
        converged="yes", learned="yes", convergence_note="")
    run_table.loc[(run_table["method"] == "cvae") & (run_table["seed"] == 1), ["learned", "convergence_note"]] = \
        ["no", "did not learn"]
    row = claim_row(cl.evaluate(cl.Study(scores, best_of(scores), SYSTEMS, run_table))[0], "sysvi_vs_cvae")
    assert row["verdict"] == cl.NOT_TESTABLE
    assert row["why"] == "a run did not train: cvae kl_weight-1 seed 1 (did not learn)"


def test_sysvi_selection_scales_per_model_and_weighs_bio_0_6():
    # setting x: bio best, batch worst; y: batch best, bio worst; z in between on both
    scores = pd.concat([
        runs("sys", "cvae", "kl_weight-1", {"nmi_fixed": [0.9] * 3, "moransi": [0.9] * 3, "ilisi": [0.0] * 3}),
        runs("sys", "cvae", "kl_weight-5", {"nmi_fixed": [0.1] * 3, "moransi": [0.1] * 3, "ilisi": [1.0] * 3}),
        runs("sys", "cvae", "kl_weight-2", {"nmi_fixed": [0.6] * 3, "moransi": [0.6] * 3, "ilisi": [0.6] * 3}),
    ])
    study = cl.Study(scores, best_of(scores), SYSTEMS)
    # scaled: kl1 0.6 x 1 + 0.4 x 0 = 0.6; kl5 0.4; kl2 0.6 x 0.625 + 0.4 x 0.6 = 0.615
    assert cl.sysvi_best_setting(study, "sys", "cvae") == "kl_weight-2"
    no_moransi = scores.assign(moransi=np.nan)  # Moran's I NA everywhere: NMI fixed alone is bio
    assert cl.sysvi_best_setting(cl.Study(no_moransi, best_of(no_moransi)), "sys", "cvae") == "kl_weight-2"


def test_kl_weight_claim_tests_both_halves_of_fig_2a():
    def kl(w, ilisi, nmi, ilisi_s, nmi_s):
        return runs("sys", "cvae", f"kl_weight-{w}", {"ilisi": ilisi, "nmi_fixed": nmi, "ilisi_scaled": ilisi_s,
                                                       "nmi_fixed_scaled": nmi_s})
    scores = pd.concat([kl(1, [0.10, 0.11, 0.12], [0.80, 0.81, 0.79], [0.30, 0.31, 0.30], [0.80, 0.80, 0.81]),
                        kl(5, [0.20, 0.21, 0.19], [0.60, 0.62, 0.61], [0.30, 0.30, 0.31], [0.80, 0.81, 0.80]),
                        kl(2, [0.0] * 3, [0.9] * 3, [0.0] * 3, [0.9] * 3)])
    table, tests = cl.evaluate(cl.Study(scores, best_of(scores), SYSTEMS))
    assert claim_row(table, "sysvi_kl_weight")["verdict"] == cl.REPRODUCED
    kl_tests = tests[tests["claim_id"] == "sysvi_kl_weight"].set_index("metric")
    assert set(kl_tests["setting_a"]) == {"kl_weight-5"} and set(kl_tests["setting_b"]) == {"kl_weight-1"}
    assert kl_tests.loc["ilisi_scaled", "expected"] == cl.EQUIVALENT
    # the scaled embedding keeps the KL effect: the second half fails
    scores.loc[scores["setting"] == "kl_weight-5", "ilisi_scaled"] = [0.5, 0.52, 0.51]
    row = claim_row(cl.evaluate(cl.Study(scores, best_of(scores), SYSTEMS))[0], "sysvi_kl_weight")
    assert row["verdict"] == cl.NOT_REPRODUCED and row["why"].startswith("ilisi_scaled")


def test_sysvi_claims_are_not_run_on_splatter_data_and_glue_is_named():
    scores = sysvi_vs_cvae()
    splatter = pd.DataFrame({"dataset": ["sys"], "source": ["simulated: common-3"]})
    table = cl.evaluate(cl.Study(scores, best_of(scores), splatter))[0]
    row = table[table["claim_id"] == "sysvi_vs_cvae"].iloc[0]
    assert row["dataset"] == "" and row["verdict"] == cl.NOT_TESTABLE and "system-effect simulation" in row["why"]
    glue = table[table["claim_id"] == "sysvi_cyc_vs_glue"].iloc[0]
    assert glue["verdict"] == cl.NOT_TESTABLE and "GLUE is not in this benchmark" in glue["why"]


def test_kappa_sweep_compares_the_ends():
    scores = pd.concat([runs("sys", "adv", f"kappa-{k}", {"jaccard": j}) for k, j in
                        ((1, [0.8, 0.82, 0.81]), (3, [0.7, 0.7, 0.71]), (10, [0.5, 0.52, 0.49]))])
    table, tests = cl.evaluate(cl.Study(scores, best_of(scores), SYSTEMS))
    assert claim_row(table, "sysvi_adv_kappa")["verdict"] == cl.REPRODUCED
    t = tests[tests["claim_id"] == "sysvi_adv_kappa"].iloc[0]
    assert (t["setting_a"], t["setting_b"]) == ("kappa-10", "kappa-1")


def test_missing_label_claim_uses_each_share_between_20_and_50_percent():
    parts = []
    for share, (sup, anvi) in {0.2: ([0.9, 0.91, 0.92], [0.7, 0.71, 0.69]),
                               0.5: ([0.6, 0.61, 0.62], [0.8, 0.81, 0.79])}.items():
        parts.append(runs("sys", "scdreamer_sup", f"label_missing-{share:g}", {"macro_f1": sup}, share)
                     .assign(base_setting="default"))
        parts.append(runs("sys", "scanvi", f"label_missing-{share:g}", {"macro_f1": anvi}, share)
                     .assign(base_setting="default"))
    parts += [runs("sys", m, "default", {"macro_f1": [np.nan] * 3}).assign(base_setting="default")
              for m in ("scdreamer_sup", "scanvi")]
    scores = pd.concat(parts)
    table, tests = cl.evaluate(cl.Study(scores, best_of(scores), SYSTEMS))
    row = claim_row(table, "scdreamer_sup_vs_scanvi")
    assert row["verdict"] == cl.NOT_REPRODUCED  # holds at 20 %, the opposite at 50 %
    mf = tests[tests["claim_id"] == "scdreamer_sup_vs_scanvi"].set_index("label_missing")["holds"]
    assert bool(mf[0.2]) and not bool(mf[0.5])
    assert "[50% labels missing]" in row["numbers"] and "significantly lower" in row["why"]


def test_davae_claim_against_the_baselines_present_cites_the_reference():
    metrics = ["ari", "one_minus_ari_batch", "kbet_acceptance"]
    scores = pd.concat([
        runs("sys", "davae", "default", {m: [0.8, 0.81, 0.79] for m in metrics}),
        runs("sys", "scanorama", "default", {m: [0.5, 0.52, 0.51] for m in metrics}),
    ])
    table, tests = cl.evaluate(cl.Study(scores, best_of(scores), SYSTEMS))
    row = claim_row(table, "davae_vs_baselines")
    assert row["verdict"] == cl.REPRODUCED and "DESC" in row["why"] and "scbean" in row["why"]
    assert set(tests[tests["claim_id"] == "davae_vs_baselines"]["method_b"]) == {"scanorama"}


def test_sccraft_claim_on_splatter_against_its_paper_peers_only():
    set_metrics = ["nmi", "ari", "asw_label", "clisi", "asw_batch", "pcr_comparison", "graph_connectivity", "kbet",
                   "ilisi", "true_positive_rate"]
    good, mid, bad = [0.9, 0.91, 0.89], [0.6, 0.62, 0.61], [0.3, 0.31, 0.29]
    scores = pd.concat([runs("sim", "sccraft", "default", {m: good for m in set_metrics}),
                        runs("sim", "scvi", "default", {m: mid for m in set_metrics}),
                        runs("sim", "scanvi", "default", {m: [1.0] * 3 for m in set_metrics}),  # supervised
                        runs("sim", "bbknn", "default", {m: [1.0] * 3 for m in set_metrics}),  # graph only
                        runs("sim", "harmony", "default", {m: bad for m in set_metrics})])
    datasets = pd.DataFrame({"dataset": ["sim"], "source": ["simulated: common-3"]})
    table, tests = cl.evaluate(cl.Study(scores, best_of(scores), datasets))
    row = claim_row(table, "sccraft_leads_simulations", "sim")
    assert row["verdict"] == cl.REPRODUCED, row["why"]
    t = tests[tests["claim_id"] == "sccraft_leads_simulations"]
    assert set(t["method_b"]) == {"scvi", "harmony"}  # not scANVI (supervised), not BBKNN
    assert t.set_index("method_b").loc["harmony", "mean_b"] == pytest.approx(0.0, abs=0.02)
    assert "sysvi_vs_cvae" not in set(table["claim_id"][table["dataset"] == "sim"])


def test_cli_writes_claims_from_the_tables(tmp_path):
    scores = sysvi_vs_cvae()
    scores.to_csv(tmp_path / "scores.tsv", sep="\t", index=False)
    best_of(scores).to_csv(tmp_path / "best.tsv", sep="\t", index=False)
    SYSTEMS.to_csv(tmp_path / "batch_strength.tsv", sep="\t", index=False)
    assert cl.main(["--tables", str(tmp_path)]) == 0
    table = pd.read_csv(tmp_path / "claims.tsv", sep="\t")
    assert set(table["claim_id"]) == {c.claim_id for c in cl.CLAIMS}
    assert (tmp_path / "claim_tests.tsv").exists()
    (tmp_path / "best.tsv").unlink()
    assert cl.main(["--tables", str(tmp_path)]) == 2


def test_morans_i_na_everywhere_is_left_out_and_said():
    scores = sysvi_vs_cvae().assign(moransi=np.nan)
    table, tests = cl.evaluate(cl.Study(scores, best_of(scores), SYSTEMS))
    row = claim_row(table, "sysvi_vs_cvae")
    assert row["verdict"] == cl.REPRODUCED and "moransi left out: no value on this dataset" in row["why"]
    scores.loc[scores["method"] == "sysvi", "moransi"] = 0.5  # one side only: not testable, not silently dropped
    row = claim_row(cl.evaluate(cl.Study(scores, best_of(scores), SYSTEMS))[0], "sysvi_vs_cvae")
    assert row["verdict"] == cl.NOT_TESTABLE and "moransi value for cvae" in row["why"]


def test_rows_only_where_the_claims_methods_ran_and_old_run_files_get_their_base_setting():
    from metrics.aggregate import legacy_base_setting

    scores = sysvi_vs_cvae()
    other = pd.DataFrame({"dataset": ["sys2"], "source": ["simulated: systems"]})
    study = cl.Study(pd.concat([scores, runs("sys2", "harmony", "default", {"ilisi": [0.5]})]), best_of(scores),
                     pd.concat([SYSTEMS, other]))
    table = cl.evaluate(study)[0]
    assert not ((table["dataset"] == "sys2") & (table["claim_id"] == "sysvi_vs_cvae")).any()  # neither ran there
    assert legacy_base_setting("label_missing-0.5", 0.5) == "default"
    assert legacy_base_setting("n_latent-10__label_missing-0.2", 0.2) == "n_latent-10"
    assert legacy_base_setting("n_latent-10", 0.0) == "n_latent-10"
