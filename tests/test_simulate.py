"""Statistical tests of the Splatter-style simulator and the ResPAN scenarios (specs E1-E3)."""

from __future__ import annotations

from dataclasses import replace

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from sklearn.neighbors import NearestNeighbors

from datasets.simulate import (
    SCENARIOS,
    apply_scenario,
    batch_specific_groups,
    downsample_batch1,
    lognormal_factors,
    parse_scenario,
    published_params,
    simulate,
    splat_simulate,
)


@pytest.fixture(scope="module")
def baseline_full():
    """Seed 1 at the published size (4000 cells x 10000 genes), filtered: the baseline."""
    return simulate("baseline", seed=1)


def test_lognormal_factor_rule_directions():
    rng = np.random.default_rng(0)
    up = lognormal_factors(rng, 5000, 1.0, 0.0, 0.1, 1.0)
    down = lognormal_factors(rng, 5000, 1.0, 1.0, 0.1, 1.0)
    assert (up >= 1).all() and (down <= 1).all()
    mixed = lognormal_factors(rng, 20000, 1.0, 0.5, 0.1, 1.0)
    assert 0.47 < (mixed > 1).mean() < 0.53
    sparse_sel = lognormal_factors(rng, 20000, 0.1, 0.5, 0.1, 1.0)
    assert 0.09 < (sparse_sel != 1).mean() < 0.11


def test_outlier_genes_replaced_by_median_times_factor():
    raw = splat_simulate(published_params(n_cells=20, n_genes=20000), seed=3)
    var = raw.var
    outliers = var["OutlierFactor"] != 1
    assert 0.001 < outliers.mean() < 0.006  # out.prob = 0.00286
    expected = np.median(var["BaseGeneMean"]) * var.loc[outliers, "OutlierFactor"]
    np.testing.assert_allclose(var.loc[outliers, "GeneMean"], expected)
    np.testing.assert_array_equal(var.loc[~outliers, "GeneMean"], var.loc[~outliers, "BaseGeneMean"])
    assert (var.loc[outliers, "OutlierFactor"] >= 1).all()


def test_published_size_filter_share_groups_and_format(baseline_full):
    adata = baseline_full
    share = adata.n_obs / 4000
    assert 0.72 <= share <= 0.83, share  # published seeds 1-10: 2973..3231 of 4000 (74-81%)
    assert sp.isspmatrix_csr(adata.X) and adata.X.dtype == np.int32
    assert (np.asarray((adata.X > 0).sum(axis=1)).ravel() >= 200).all()
    assert (np.asarray((adata.X > 0).sum(axis=0)).ravel() >= 3).all()
    group_share = adata.obs["celltype"].value_counts(normalize=True)
    assert len(group_share) == 7 and (np.abs(group_share - 1 / 7) < 0.03).all(), group_share
    batch_sizes = adata.obs["batch"].value_counts()
    assert set(batch_sizes.index) == {"Batch1", "Batch2"} and (batch_sizes > 1400).all()
    assert {"ExpLibSize", "batch", "celltype"} <= set(adata.obs.columns)
    assert {"GeneMean", "BatchFacBatch2", "DEFacGroup7"} <= set(adata.var.columns)


def test_library_size_drives_totals(baseline_full):
    totals = np.asarray(baseline_full.X.sum(axis=1)).ravel()
    rho = pd.Series(totals).corr(pd.Series(baseline_full.obs["ExpLibSize"].to_numpy()), method="spearman")
    assert rho > 0.8


def test_dropout_zeroes_low_means():
    """With dropout, a count survives w.p. lambda/(1+lambda): more zeros than Poisson alone."""
    params = published_params(n_cells=300, n_genes=2000)
    no_dropout = splat_simulate(replace(params, dropout_mid=-1e9), seed=5)  # drop prob -> 0
    with_dropout = splat_simulate(params, seed=5)
    assert with_dropout.X.nnz < 0.8 * no_dropout.X.nnz  # ~0.64 observed


def test_batch1_formula_matches_published_seed1_counts():
    """Seed 1 of the paper: Batch1 1585 -> 793 / 397 / 199 with Batch2 1633 intact."""
    obs = pd.DataFrame({"batch": pd.Categorical(["Batch1"] * 1585 + ["Batch2"] * 1633),
                        "celltype": pd.Categorical(["Group1"] * 3218)}, index=[f"c{i}" for i in range(3218)])
    adata = ad.AnnData(X=sp.csr_matrix((3218, 2), dtype=np.int32), obs=obs)
    rng = np.random.default_rng(0)
    for fraction, expected in ((0.5, 793), (0.25, 397), (0.125, 199)):
        counts = downsample_batch1(adata, fraction, rng).obs["batch"].value_counts()
        assert counts["Batch1"] == expected and counts["Batch2"] == 1633


@pytest.mark.parametrize("fraction", [0.5, 0.25, 0.125])
def test_batch1_scenarios(baseline_full, fraction):
    out = apply_scenario(baseline_full, f"batch1-{fraction}", np.random.default_rng(1))
    before = baseline_full.obs["batch"].value_counts()
    after = out.obs["batch"].value_counts()
    assert after["Batch1"] == before["Batch1"] - int((1 - fraction) * before["Batch1"])
    assert after["Batch2"] == before["Batch2"]
    assert set(out.obs_names) <= set(baseline_full.obs_names)


@pytest.mark.parametrize("fraction", [0.5, 0.2, 0.1])
def test_rare1_scenarios_pool_group1_over_batches(baseline_full, fraction):
    out = apply_scenario(baseline_full, f"rare1-{fraction}", np.random.default_rng(2))
    before = pd.crosstab(baseline_full.obs["celltype"], baseline_full.obs["batch"])
    after = pd.crosstab(out.obs["celltype"], out.obs["batch"])
    n_group1 = before.loc["Group1"].sum()
    assert after.loc["Group1"].sum() == n_group1 - int(n_group1 * (1 - fraction))
    pd.testing.assert_frame_equal(after.drop(index="Group1"), before.drop(index="Group1"))
    assert (before.loc["Group1"] > after.loc["Group1"]).all()  # pooled draw hits both batches


@pytest.mark.parametrize(("k", "only1", "only2"), [
    (5, ["Group6"], ["Group7"]),
    (3, ["Group4", "Group5"], ["Group6", "Group7"]),
    (1, ["Group2", "Group3", "Group4"], ["Group5", "Group6", "Group7"]),
])
def test_common_scenarios_crosstab(baseline_full, k, only1, only2):
    assert batch_specific_groups(k) == (only1, only2)
    out = apply_scenario(baseline_full, f"common-{k}", np.random.default_rng(3))
    before = pd.crosstab(baseline_full.obs["celltype"], baseline_full.obs["batch"])
    after = pd.crosstab(out.obs["celltype"], out.obs["batch"]).reindex(index=before.index, fill_value=0)
    shared = [f"Group{r}" for r in range(1, k + 1)]
    pd.testing.assert_frame_equal(after.loc[shared], before.loc[shared])
    assert (after.loc[only1, "Batch2"] == 0).all() and (after.loc[only1, "Batch1"] == before.loc[only1, "Batch1"]).all()
    assert (after.loc[only2, "Batch1"] == 0).all() and (after.loc[only2, "Batch2"] == before.loc[only2, "Batch2"]).all()


def test_simulate_is_deterministic_and_seed_dependent():
    kwargs = {"scenario": "rare1-0.2", "n_cells": 600, "n_genes": 1500}
    first, again, other = simulate(seed=7, **kwargs), simulate(seed=7, **kwargs), simulate(seed=8, **kwargs)
    assert (first.X != again.X).nnz == 0
    pd.testing.assert_frame_equal(first.obs, again.obs)
    assert first.n_obs != other.n_obs or (first.X != other.X).nnz > 0


def test_simulate_scenario_uses_seeded_subset():
    a = simulate("batch1-0.5", seed=4, n_cells=600, n_genes=1500)
    b = simulate("batch1-0.5", seed=4, n_cells=600, n_genes=1500)
    base = simulate("baseline", seed=4, n_cells=600, n_genes=1500)
    assert list(a.obs_names) == list(b.obs_names)
    assert a.n_obs < base.n_obs and a.uns["simulation"]["scenario"] == "batch1-0.5"


def test_three_batches_extend_batch_factors():
    params = published_params(n_cells=301, n_genes=100, n_batches=3)
    assert params.batch_cells == (101, 100, 100)
    np.testing.assert_allclose(params.batch_fac_loc, [0.10, 0.125, 0.15])
    np.testing.assert_allclose(params.batch_fac_scale, [0.5, 0.75, 1.0])
    assert published_params().batch_fac_loc == (0.10, 0.15)
    raw = splat_simulate(params, seed=0)
    assert list(raw.obs["batch"].value_counts().sort_index()) == [101, 100, 100]


def test_visible_batch_effect_before_integration(sim_small):
    """kNN batch purity on the unintegrated PCA is far above the ~0.5 of well-mixed batches."""
    pcs = sim_small.obsm["X_pca"][:, :20]
    batches = sim_small.obs["batch"].to_numpy()
    _, idx = NearestNeighbors(n_neighbors=16).fit(pcs).kneighbors(pcs)
    purity = (batches[idx[:, 1:]] == batches[:, None]).mean()
    shuffled = np.random.default_rng(0).permutation(batches)
    control = (shuffled[idx[:, 1:]] == shuffled[:, None]).mean()
    assert purity > 0.9 and control < 0.6, (purity, control)


def test_scenario_names():
    assert all(parse_scenario(s) for s in SCENARIOS)
    assert parse_scenario("common-3") == ("common", 3.0)
    for bad in ("batch2-0.5", "rare1-1.5", "common-2.5", "base"):
        with pytest.raises(ValueError, match="scenario"):
            parse_scenario(bad)
