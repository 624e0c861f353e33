"""Selection (design.md section 6) on hand-made score tables with known answers."""

import numpy as np
import pandas as pd

from metrics.select import across_methods, composite, fit_exponent, minmax, score_runs, select_best


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
