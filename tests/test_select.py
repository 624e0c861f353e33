"""Selection (design.md section 6) on hand-made score tables with known answers."""

import numpy as np
import pandas as pd
import pytest

from metrics.select import across_methods, composite, fit_exponent, minmax, score_runs, select_best, summarize


def test_minmax_and_direction():
    s = pd.Series([1.0, 3.0, 2.0, np.nan])
    assert minmax(s).tolist()[:3] == [0.0, 1.0, 0.5] and np.isnan(minmax(s).iloc[3])
    assert minmax(s, higher_is_better=False).tolist()[:3] == [1.0, 0.0, 0.5]
    assert minmax(pd.Series([2.0, 2.0])).tolist() == [0.5, 0.5]


def test_composite_is_60_40():
    scaled = pd.DataFrame({"nmi": [1.0, 0.0], "ilisi": [0.0, 1.0]})
    comp = composite(scaled, ["nmi"], ["ilisi"])
    assert comp["overall"].tolist() == [0.6, 0.4]
    assert comp["combined_5050"].tolist() == [0.5, 0.5]


def _wide():
    rows = []
    # setting A: good bio, mid batch; setting B: worse; seed 2 of B failed
    for setting, seed, nmi, ilisi, status in [("A", 0, 0.9, 0.5, "ok"), ("A", 1, 0.8, 0.6, "ok"),
                                              ("A", 2, 0.85, 0.55, "ok"), ("B", 0, 0.5, 0.4, "ok"),
                                              ("B", 1, 0.4, 0.3, "ok"), ("B", 2, np.nan, np.nan, "failed")]:
        rows.append({"dataset": "d", "method": "m", "setting": setting, "seed": seed, "label_missing": 0.0,
                     "status": status, "error": "" if status == "ok" else "boom", "nmi": nmi, "ilisi": ilisi})
    rows.append({"dataset": "d", "method": "u", "setting": "default", "seed": 0, "label_missing": 0.0,
                 "status": "ok", "error": "", "nmi": 0.7, "ilisi": 0.1})
    return pd.DataFrame(rows)


def test_best_setting_and_median_representative():
    scores = score_runs(_wide(), ["nmi"], ["ilisi"])
    assert scores.loc[scores["status"] == "failed", "overall"].isna().all()
    best = select_best(scores)
    m = best.set_index("method").loc["m"]
    assert m["best_setting"] == "A" and m["n_failed"] == 1
    # A's overall per seed: seed0 0.6*1+0.4*.6667, seed1 .6*.6+.4*1, seed2 .6*.8+.4*.8333 -> median seed2
    assert m["representative_seed"] == 2


def test_failed_seed_ranks_setting_below_complete_ones():
    wide = _wide()
    wide.loc[(wide.setting == "A") & (wide.seed == 0), ["status", "nmi", "ilisi"]] = ["failed", np.nan, np.nan]
    wide.loc[wide.setting == "B", "status"] = "ok"
    wide.loc[(wide.setting == "B") & (wide.seed == 2), ["nmi", "ilisi"]] = [0.45, 0.35]
    best = select_best(score_runs(wide, ["nmi"], ["ilisi"]))
    assert best.set_index("method").loc["m", "best_setting"] == "B"


def test_across_methods_ranks():
    wide = _wide()
    scores = score_runs(wide, ["nmi"], ["ilisi"])
    best = across_methods(scores, select_best(scores), ["nmi", "ilisi"], ["nmi"], ["ilisi"])
    b = best.set_index("method")
    # m (best A: nmi .85, ilisi .55) beats u (nmi .7, ilisi .1) on both -> overall 1 vs 0
    assert b.loc["m", "overall"] == 1.0 and b.loc["u", "overall"] == 0.0
    assert b.loc["m", "rank"] == 1 and b.loc["u", "rank"] == 2
    assert abs(b.loc["m", "nmi"] - 0.85) < 1e-12  # raw mean over seeds kept beside scaled


def test_fit_exponent():
    n = np.array([1000, 2000, 4000])
    assert abs(fit_exponent(n, 3 * n**1.5) - 1.5) < 1e-9
    assert np.isnan(fit_exponent(n[:1], n[:1]))


# --- the selection rules of issue #14 (each test fails on 37c88a7) ---------------------------------

def _runs(rows, dataset="d", method="m"):
    """wide rows (setting, seed, nmi, ilisi[, label_missing[, status]]) -> a wide table."""
    out = []
    for row in rows:
        setting, seed, nmi, ilisi, *rest = row
        lm = rest[0] if rest else 0.0
        status = rest[1] if len(rest) > 1 else ("ok" if np.isfinite(ilisi) else "failed")
        out.append({"dataset": dataset, "method": method, "setting": setting, "seed": seed, "label_missing": lm,
                    "status": status, "error": "" if status == "ok" else "boom", "nmi": nmi, "ilisi": ilisi,
                    "batch_cluster_nmi": 0.5 + 0.1 * seed + (0.3 if setting == "B" else 0.0)})
    return pd.DataFrame(out)


def test_unlabelled_dataset_is_selected_by_the_label_free_score():
    # every bio metric null (as metrics/score.py writes them for an unlabelled dataset)
    wide = _runs([("A", 0, np.nan, 0.5), ("A", 1, np.nan, 0.6), ("B", 0, np.nan, 0.5), ("B", 1, np.nan, 0.6)])
    scores = score_runs(wide, ["nmi"], ["ilisi"])
    assert scores["overall"].isna().all()
    best = select_best(scores, unlabelled={"d"}).iloc[0]
    # same batch score, B keeps more of each batch's clusters
    assert best["best_setting"] == "B" and best["criterion"] == "unsupervised"
    assert best["criterion_source"] == "automatic: dataset unlabelled"
    assert best["representative_seed"] in (0, 1) and best["n_failed_seeds"] == 0


def test_seeds_without_a_score_count_as_failed_and_do_not_crash():
    # 2 of A's 3 seeds have no bio value: no composite for them
    wide = _runs([("A", 0, 0.9, 0.6), ("A", 1, np.nan, 0.6), ("A", 2, np.nan, 0.6),
                  ("B", 0, 0.5, 0.4), ("B", 1, 0.4, 0.3), ("B", 2, 0.45, 0.35)])
    best = select_best(score_runs(wide, ["nmi"], ["ilisi"])).iloc[0]
    assert best["best_setting"] == "B" and best["n_failed_seeds"] == 0 and best["representative_seed"] == 2
    only_a = select_best(score_runs(wide[wide["setting"] == "A"], ["nmi"], ["ilisi"])).iloc[0]
    assert only_a["best_setting"] == "A" and only_a["n_failed_seeds"] == 2 and only_a["representative_seed"] == 0


def test_dataset_selection_overrides_the_study_criterion():
    wide = pd.concat([_runs([("A", 0, 0.9, 0.6), ("B", 0, 0.5, 0.6)], dataset=d) for d in ("d1", "d2")])
    best = select_best(score_runs(wide, ["nmi"], ["ilisi"]), dataset_criteria={"d2": "unsupervised"})
    b = best.set_index("dataset")
    assert b.loc["d1", "best_setting"] == "A" and b.loc["d1", "criterion_source"] == "selection"
    assert b.loc["d2", "best_setting"] == "B" and b.loc["d2", "criterion"] == "unsupervised"
    assert b.loc["d2", "criterion_source"] == "datasets.d2.selection"
    # without the proxy metrics the label-free score does not exist: the composite chooses
    no_proxy = select_best(score_runs(wide.drop(columns="batch_cluster_nmi"), ["nmi"], ["ilisi"]), "unsupervised")
    assert set(no_proxy["best_setting"]) == {"A"} and set(no_proxy["criterion"]) == {"composite"}
    assert set(no_proxy["criterion_source"]) == {"automatic: no label-free proxy value"}


def test_hidden_label_runs_do_not_shift_the_selection_ranges():
    # labelled only: A = .6*1 + .4*0 = .6 beats B = .4. A hidden-label run with NMI 0.1 would
    # stretch the NMI range (A .6, B .7) and flip the choice if it entered the ranges.
    wide = _runs([("A", 0, 0.9, 0.2), ("B", 0, 0.5, 0.6), ("label_missing-0.5", 0, 0.1, 0.4, 0.5)])
    scores = score_runs(wide, ["nmi"], ["ilisi"])
    best = select_best(scores).iloc[0]
    assert best["best_setting"] == "A" and best["within_overall"] == pytest.approx(0.6)
    hidden = scores[scores["label_missing"] == 0.5].iloc[0]
    assert hidden["scaled_nmi"] == pytest.approx(-1.0)  # scaled with the labelled range 0.5..0.9


def test_failed_seed_rule_is_a_selection_option():
    # A: one failed seed of 3, far better on the others; B: complete, mediocre
    wide = _runs([("A", 0, 0.9, 0.9), ("A", 1, 0.85, 0.85), ("A", 2, np.nan, np.nan),
                  ("B", 0, 0.1, 0.2), ("B", 1, 0.2, 0.1), ("B", 2, 0.15, 0.15)])
    scores = score_runs(wide, ["nmi"], ["ilisi"])
    below = select_best(scores, failed_seeds="rank_below").iloc[0]
    assert below["best_setting"] == "B" and below["n_failed_seeds"] == 0 and below["failed_seeds_rule"] == "rank_below"
    worst = select_best(scores, failed_seeds="count_as_worst").iloc[0]
    assert worst["best_setting"] == "A" and worst["n_failed_seeds"] == 1 and worst["n_seeds"] == 3
    with pytest.raises(ValueError, match="selection.failed_seeds: 'drop' is unknown"):
        select_best(scores, failed_seeds="drop")


def _best_table(rng, methods, datasets, failed=()):
    """across-method best rows from random raw metric means; ``failed`` = {(method, dataset)}."""
    rows = []
    for d in datasets:
        for m in methods:
            nmi, ilisi = rng.uniform(0, 1, 2)
            rows.append({"dataset": d, "method": m, "setting": "default", "label_missing": 0.0,
                         "status": "failed" if (m, d) in failed else "ok", "nmi": nmi, "ilisi": ilisi})
    scores = pd.DataFrame(rows)
    best = scores[["dataset", "method"]].assign(best_setting=np.where(scores["status"] == "ok", "default", None))
    return across_methods(scores, best, ["nmi", "ilisi"], ["nmi"], ["ilisi"])


def test_failed_dataset_stays_visible_and_never_improves_a_rank():
    # seed 4: m1 failing on d2 leaves m2 and m3 alone there, rescaled to 0 and 1; counting the
    # failure as 0 without ranking by failures first would lift m1 from third to second place
    methods, datasets = ["m1", "m2", "m3"], ["d1", "d2"]
    for seed in range(6):
        base = summarize(_best_table(np.random.default_rng(seed), methods, datasets)).set_index("method")
        for m in methods:
            for d in datasets:
                summary = summarize(_best_table(np.random.default_rng(seed), methods, datasets, {(m, d)}))
                s = summary.set_index("method")
                assert s.loc[m, "rank"] >= base.loc[m, "rank"], (seed, m, d)
                assert s.loc[m, "n_failed_datasets"] == 1 and s.loc[m, "failed_datasets"] == d


def test_summary_counts_a_failed_dataset_as_zero():
    best = pd.DataFrame({"dataset": ["d1", "d2", "d1", "d2"], "method": ["f", "f", "g", "g"],
                         "overall": [1.0, np.nan, 0.4, 0.4], "bio": [1.0, np.nan, 0.4, 0.4],
                         "batch": [1.0, np.nan, 0.4, 0.4]})
    s = summarize(best).set_index("method")
    # f was best where it ran, but failed on d2: it ranks below g and its mean counts d2 as 0
    assert s.loc["f", "overall"] == pytest.approx(0.5) and s.loc["f", "rank"] == 2 and s.loc["g", "rank"] == 1
    assert s.loc["f", "n_datasets"] == 2 and s.loc["f", "n_failed_datasets"] == 1


def test_tables_of_an_unlabelled_and_a_labelled_dataset(tmp_path):
    from study_files import write_study

    from metrics.aggregate import main

    files = write_study(tmp_path, {"sim": True, "jurkat": False},
                        {"harmony": ["theta-1", "theta-5"], "scanvi": ["default", "n_latent-20"]},
                        seeds=[0, 1, 2], label_missing=[0, 0.5],
                        failed={("sim", "harmony", "theta-5", 1), ("jurkat", "scanvi", "n_latent-20", 0)})
    tables = tmp_path / "tables"
    main(["tables", "--metrics", *map(str, files), "--tables", str(tables),
          "--selection", '{"criterion": "composite", "set": "scib"}'])
    best = pd.read_csv(tables / "best.tsv", sep="\t").set_index(["dataset", "method"])
    assert best["best_setting"].notna().all()
    assert set(best.loc["jurkat", "criterion"]) == {"unsupervised"}
    assert set(best.loc["jurkat", "criterion_source"]) == {"automatic: dataset unlabelled"}
    assert set(best.loc["sim", "criterion"]) == {"composite"}
    # no hidden-label setting is ever a best setting
    assert not best["best_setting"].str.contains("label_missing").any()
    # jurkat has no bio metric: its overall across methods uses the proxy, bio stays empty
    assert best.loc["jurkat", "bio"].isna().all() and best.loc["jurkat", "overall"].notna().all()
    summary = pd.read_csv(tables / "summary.tsv", sep="\t").set_index("method")
    assert (summary["n_failed_datasets"] == 0).all() and (summary["n_datasets"] == 2).all()


def test_bad_selection_value_is_one_clear_error(tmp_path):
    from metrics.aggregate import main

    with pytest.raises(SystemExit, match=r"datasets\.jurkat\.selection\.criterion: 'labels' is unknown"):
        main(["tables", "--metrics", str(tmp_path / "m.json"), "--tables", str(tmp_path),
              "--selection", '{"datasets": {"jurkat": {"criterion": "labels"}}}'])
