"""Latent-scale flag of trained runs (metrics/latent_scale.py), its report banner, and the
run-identity column the aggregate step writes from run records (base_setting)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from metrics import latent_scale
from metrics.latent_scale import assess, flag_runs

# per-dimension sd of the posterior means (15 dims) on Splatter common-3 (1,069 cells), measured:
# sysVI (paper code, 500 epochs, seed 0; iLISI 0.016): three stretched dimensions, the rest near 0
DEGENERATE = [9.42, 7.72, 6.78, 0.14, 0.13, 0.13, 0.13, 0.13, 0.13, 0.13, 0.12, 0.12, 0.12, 0.11, 0.1]
# scvi-tools' SysVI after 100 epochs on 551 cells: three used dimensions, not stretched
FEW_USED = [3.74, 3.16, 3.0, 0.48, 0.37, 0.34, 0.33, 0.27, 0.23, 0.22, 0.21, 0.2, 0.18, 0.18, 0.16]
# the port set as scvi-tools: the spread over several dimensions
SPREAD = [2.87, 2.52, 2.29, 1.88, 0.92, 0.82, 0.76, 0.71, 0.35, 0.33, 0.29, 0.2, 0.17, 0.14, 0.14]


def runs_table(profiles: dict[str, list[float] | None], dataset: str = "d") -> pd.DataFrame:
    rows = [{"dataset": dataset, "method": m, "setting": "default", "seed": 0, **assess({"latent_sd": sd})}
            for m, sd in profiles.items()]
    return flag_runs(pd.DataFrame(rows))


def test_few_stretched_dimensions_are_flagged_and_either_sign_alone_is_not():
    r = runs_table({"sysvi": DEGENERATE, "sysvi_scvitools": FEW_USED, "vamp": SPREAD, "cvae": SPREAD}).set_index("method")
    assert r.loc["sysvi", "latent_scale_flag"] == "yes"
    assert r.loc["sysvi", "latent_sd_max"] == pytest.approx(9.42)
    assert r.loc["sysvi", "latent_sd_ratio"] == pytest.approx(9.42 / 0.13)
    # reference: median over the other methods of the largest sd = median(3.74, 2.87, 2.87)
    assert r.loc["sysvi", "latent_sd_vs_dataset"] == pytest.approx(9.42 / 2.87)
    assert r.loc["vamp", "latent_sd_vs_dataset"] == pytest.approx(2.87 / 3.74)
    # a few used dimensions at an ordinary scale, and a spread latent: not flagged
    assert r.loc["sysvi_scvitools", "latent_sd_ratio"] > latent_scale.WITHIN_RATIO
    assert set(r.loc[["sysvi_scvitools", "vamp", "cvae"], "latent_scale_flag"]) == {"no"}
    # stretched but spread (a method with a wide latent scale): not flagged
    wide = runs_table({"wide": [10 * v for v in SPREAD], "a": SPREAD, "b": FEW_USED}).set_index("method")
    assert wide.loc["wide", "latent_sd_vs_dataset"] > latent_scale.DATASET_RATIO
    assert wide.loc["wide", "latent_scale_flag"] == "no"


def test_a_degenerate_run_is_not_its_own_reference():
    """Measured on Splatter common-3 after 200 epochs (seed 0; iLISI: sysVI 0.00, VAMP 0.40, cVAE 0.75).
    With sysVI's own 8.64 in the median it would sit at 1.99x (not flagged); against the other two, 3.2x."""
    r = runs_table({"sysvi": [8.64, 6.24, 5.16, 0.15, 0.13, 0.13, 0.13, 0.12, 0.11, 0.11, 0.11, 0.1, 0.1, 0.1, 0.1],
                    "vamp": [4.33, 4.03, 3.09, 2.98, 2.56, 2.15, 0.08, 0.07, 0.07, 0.06, 0.05, 0.05, 0.05, 0.04, 0.04],
                    "cvae": [1.07, 1.05, 1.04, 1.04, 1.02, 1.02, 1.02, 1.02, 1.01, 1.01, 0.97, 0.36, 0.07, 0.05, 0.04]}
                   ).set_index("method")
    assert r.loc["sysvi", "latent_sd_vs_dataset"] == pytest.approx(8.64 / ((4.33 + 1.07) / 2))
    assert list(r["latent_scale_flag"]) == ["yes", "no", "no"]


def test_runs_without_a_usable_spread_and_datasets_with_too_few_methods_are_not_assessed():
    for rec in ({"status": "failed", "latent_sd": DEGENERATE}, {"status": "ok"}, {"latent_sd": [2.0]},
                {"latent_sd": [1.0, np.nan]}):
        assert np.isnan(assess(rec)["latent_sd_max"])
    r = runs_table({"sysvi": DEGENERATE, "vamp": SPREAD, "harmony": None}).set_index("method")
    assert (r["latent_scale_flag"] == "").all()  # two methods with a spread: nothing to compare with
    assert r.loc["sysvi", "latent_sd_max"] == pytest.approx(9.42) and np.isnan(r.loc["harmony", "latent_sd_max"])


def test_report_states_the_rule_the_tables_apply():
    from reports import trust

    assert trust.LATENT_WITHIN_RATIO == latent_scale.WITHIN_RATIO
    assert trust.LATENT_DATASET_RATIO == latent_scale.DATASET_RATIO
    assert trust.LATENT_MIN_METHODS == latent_scale.MIN_METHODS


def test_report_banner_lists_the_flagged_runs_or_says_none_is():
    from reports.trust import latent_scale_banner

    runs = runs_table({"sysvi": DEGENERATE, "sysvi_scvitools": FEW_USED, "vamp": SPREAD, "harmony": None})
    banner = latent_scale_banner(runs)
    assert "1 of 3 trained runs have a stretched latent space</b> (sysvi)" in banner
    assert "<td>sysvi</td>" in banner and "<td>vamp</td>" not in banner and "latent_scale_flag" in banner
    calm = latent_scale_banner(runs_table({"a": SPREAD, "b": FEW_USED, "c": SPREAD}))
    assert "none of the 3 assessed trained runs" in calm and "warn" not in calm
    assert latent_scale_banner(runs.drop(columns=latent_scale.COLUMNS)) == ""


def test_report_banner_names_datasets_with_too_few_methods_to_assess():
    """sysVI and VAMP alone on a dataset: the rule needs >= 3 methods there, so the banner says the
    runs were not assessed (and where) instead of saying nothing."""
    from reports.trust import latent_scale_banner

    pair = runs_table({"sysvi": DEGENERATE, "vamp": SPREAD}, dataset="sim_common3")
    assert list(pair["latent_scale_flag"]) == ["", ""]
    banner = latent_scale_banner(pair)
    assert "Latent scale: not assessed on sim_common3 (sysvi, vamp)" in banner and "at least 3 methods" in banner
    both = pd.concat([runs_table({"a": SPREAD, "b": FEW_USED, "c": SPREAD}), pair], ignore_index=True)
    calm = latent_scale_banner(both)
    assert "none of the 3 assessed trained runs" in calm and "Not assessed on sim_common3" in calm


def test_aggregate_writes_latent_scale_and_base_setting_columns(tmp_path):
    from test_convergence import record, write_run

    from metrics.aggregate import build_tables

    runs = tmp_path / "runs" / "d"
    curve = np.r_[np.linspace(100, 10, 20), [10.0] * 20]
    files = [write_run(runs / m / "default" / "seed0", record(curve, latent_sd=sd, base_setting="default"),
                       {"nmi": 0.5, "ilisi": 0.1})
             for m, sd in (("sysvi", DEGENERATE), ("vamp", SPREAD), ("sysvi_scvitools", FEW_USED))]
    files += [
        write_run(runs / "scanvi" / "lr-0.1__label_missing-0.5" / "seed0",
                  record(curve, label_missing=0.5, base_setting="lr-0.1"), {"nmi": 0.4, "ilisi": 0.4}),
        write_run(runs / "harmony" / "default" / "seed0", {"status": "ok", "epochs": None}, {"nmi": 0.4, "ilisi": 0.4}),
    ]
    tables = build_tables(files, {"set": "scib"})
    r = tables["runs"].set_index("method")
    assert list(r.loc[["sysvi", "vamp", "sysvi_scvitools", "scanvi", "harmony"], "latent_scale_flag"]) == \
        ["yes", "no", "no", "", ""]
    assert r.loc["sysvi", "latent_sd_max"] == pytest.approx(9.42)
    # the fully labelled setting a run was made from: recorded by the runner, a column of both tables;
    # a record without it (written before it existed) falls back to the setting for fully labelled runs
    s = tables["scores"].set_index("method")["base_setting"]
    assert s["scanvi"] == "lr-0.1" and s["harmony"] == "default" and r.loc["scanvi", "base_setting"] == "lr-0.1"
