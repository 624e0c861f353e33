"""Preprocessing output contract (design.md section 3), options, subsampling and the CLI."""

from __future__ import annotations

import json

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from datasets import write_h5ad_atomic
from datasets.__main__ import main
from datasets.ingest import DataError
from datasets.preprocess import allocate_stratified, n_pcs_for, preprocess, subsample
from datasets.simulate import simulate

KEYS = {"name": "toy", "batch_key": "batch", "label_key": "celltype"}


@pytest.fixture(scope="module")
def raw_toy():
    """Filtered simulated raw data, ~300 cells x ~1500 genes."""
    return simulate("baseline", seed=2, n_cells=500, n_genes=2000)


def test_contract_of_preprocessed_file(sim_small_path):
    adata = ad.read_h5ad(sim_small_path)
    assert adata.n_vars == 500 and adata.X.dtype == np.float32 and sp.issparse(adata.X)
    counts = adata.layers["counts"]
    assert counts.shape == adata.shape
    np.testing.assert_array_equal(counts.data, np.round(counts.data))
    # X is log1p of normalized counts: zero exactly where counts are zero, monotone in counts per cell
    assert ((adata.X > 0) != (counts > 0)).nnz == 0
    row = adata.X[0].toarray().ravel()
    raw_row = counts[0].toarray().ravel()
    scale = np.expm1(row[raw_row > 0]) / raw_row[raw_row > 0]
    np.testing.assert_allclose(scale, scale[0], rtol=1e-4)  # one size factor per cell
    for key in ("batch", "label", "system"):
        assert isinstance(adata.obs[key].dtype, pd.CategoricalDtype)
    assert (adata.obs["label"].astype(str) == adata.obs["celltype"].astype(str)).all()
    assert (adata.obs["system"].astype(str) == adata.obs["batch"].astype(str)).all()
    assert adata.obsm["X_pca"].shape == (adata.n_obs, 50) and adata.obsm["X_pca"].dtype == np.float32
    prov = adata.uns["dataset"]
    assert prov["name"] == "sim_small" and prov["hvg_flavor"] == "seurat" and prov["n_hvg"] == 500
    assert prov["n_cells_qc"] == adata.n_obs and prov["counts_integer"] and prov["label_key"] == "celltype"
    assert json.loads(adata.uns["dataset_json"])["system_key"] is None


def test_size_factor_matches_all_qc_genes(raw_toy):
    """normalize_total runs on all QC genes before HVG subsetting (scanpy order)."""
    out = preprocess(raw_toy, **KEYS, n_hvg=200)
    cell = raw_toy.obs_names.get_loc(out.obs_names[0])
    total = raw_toy.X[cell].sum()
    gene = np.flatnonzero(out.layers["counts"][0].toarray().ravel())[0]
    expected = np.log1p(out.layers["counts"][0, gene] / total * 1e4)
    assert out.X[0, gene] == pytest.approx(expected, rel=1e-5)


def test_hvg_and_pcs_capped_for_small_data(raw_toy):
    tiny = raw_toy[np.r_[0:20, raw_toy.n_obs - 20:raw_toy.n_obs]].copy()  # 20 cells of each batch
    out = preprocess(tiny, **KEYS, n_hvg=10**6, min_genes=0, min_cells=1)
    n_genes_qc = out.uns["dataset"]["n_genes_qc"]
    assert out.n_vars == n_genes_qc and out.obsm["X_pca"].shape[1] == 39
    assert n_pcs_for(40, 1000, 50) == 39 and n_pcs_for(1000, 20, 50) == 19


def test_qc_thresholds_are_applied_and_recorded(raw_toy):
    loose = preprocess(raw_toy, **KEYS, n_hvg=300, min_genes=0)
    strict = preprocess(raw_toy, **KEYS, n_hvg=300, min_genes=400)
    n_genes_detected = np.asarray((raw_toy.X > 0).sum(axis=1)).ravel()
    assert loose.n_obs == raw_toy.n_obs and strict.n_obs == (n_genes_detected >= 400).sum() < raw_toy.n_obs
    assert strict.uns["dataset"]["min_genes"] == 400 and strict.uns["dataset"]["n_cells_raw"] == raw_toy.n_obs


def test_deterministic_under_seed(raw_toy):
    first = preprocess(raw_toy, **KEYS, n_hvg=300, seed=3)
    again = preprocess(raw_toy, **KEYS, n_hvg=300, seed=3)
    np.testing.assert_array_equal(first.obsm["X_pca"], again.obsm["X_pca"])
    assert list(first.var_names) == list(again.var_names)


def test_counts_in_layer_give_same_result(raw_toy):
    layered = raw_toy.copy()
    layered.layers["counts"] = raw_toy.X.copy()
    layered.X = sp.csr_matrix(np.log1p(raw_toy.X.toarray()).astype(np.float32))
    a = preprocess(raw_toy, **KEYS, n_hvg=300)
    b = preprocess(layered, **KEYS, n_hvg=300, counts="layers/counts")
    assert list(a.var_names) == list(b.var_names)
    assert (a.X != b.X).nnz == 0


def test_unlabelled_and_system_key(raw_toy):
    raw = raw_toy.copy()
    raw.obs["tech"] = np.where(raw.obs["batch"] == "Batch1", "sc", "sn")
    out = preprocess(raw, name="toy", batch_key="batch", label_key=None, system_key="tech", n_hvg=300)
    assert set(out.obs["label"]) == {"unknown"} and out.uns["dataset"]["labelled"] is False
    assert set(out.obs["system"]) == {"sc", "sn"} and out.uns["dataset"]["label_key"] == "none"


def test_batch_emptied_by_qc_is_an_error(raw_toy):
    raw = raw_toy.copy()
    detected = np.asarray((raw.X > 0).sum(axis=1)).ravel()
    # put the 2 cells with the fewest detected genes in their own batch, then filter them away
    low = np.argsort(detected)[:2]
    raw.obs["batch"] = raw.obs["batch"].astype(str)
    raw.obs.iloc[low, raw.obs.columns.get_loc("batch")] = "Tiny"
    with pytest.raises(DataError, match="dataset 'toy': batch\\(es\\) with fewer than 3 cells after QC: Tiny"):
        preprocess(raw, **KEYS, n_hvg=300, min_genes=int(detected[low].max()) + 1)


def test_allocate_stratified():
    assert list(allocate_stratified(np.array([600, 300, 100]), 10)) == [6, 3, 1]
    assert list(allocate_stratified(np.array([998, 1, 1]), 5)) == [3, 1, 1]
    alloc = allocate_stratified(np.array([5, 7, 11]), 17)
    assert alloc.sum() == 17 and (alloc <= [5, 7, 11]).all()


def test_subsample_stratified_and_deterministic(sim_small):
    sub = subsample(sim_small, 200, seed=1)
    assert sub.n_obs == 200 and sub.obs_names.is_unique
    full_share = sim_small.obs["batch"].value_counts(normalize=True)
    sub_share = sub.obs["batch"].value_counts(normalize=True)
    assert (np.abs(sub_share - full_share) < 0.01).all()
    positions = sim_small.obs_names.get_indexer(sub.obs_names)
    assert (np.diff(positions) > 0).all()  # original order kept
    np.testing.assert_array_equal(sub.obsm["X_pca"], sim_small.obsm["X_pca"][positions])
    assert list(subsample(sim_small, 200, seed=1).obs_names) == list(sub.obs_names)
    assert list(subsample(sim_small, 200, seed=2).obs_names) != list(sub.obs_names)
    assert sub.uns["dataset"]["subsample_n"] == 200


def test_subsample_too_many_cells(sim_small):
    with pytest.raises(DataError, match=f"cannot subsample {sim_small.n_obs + 1} cells from {sim_small.n_obs}"):
        subsample(sim_small, sim_small.n_obs + 1, seed=0)


def test_cli_simulate_preprocess_subsample(tmp_path):
    raw, data, sub = tmp_path / "raw.h5ad", tmp_path / "data.h5ad", tmp_path / "sub.h5ad"
    assert main(["simulate", "--scenario", "common-3", "--seed", "5", "--n-cells", "500", "--n-genes", "1500",
                 "--out", str(raw)]) == 0
    assert main(["preprocess", "--raw", str(raw), "--out", str(data), "--name", "sim", "--batch-key", "batch",
                 "--label-key", "celltype", "--n-hvg", "300", "--counts-integer", "true"]) == 0
    assert main(["subsample", "--data", str(data), "--n", "100", "--seed", "0", "--out", str(sub)]) == 0
    raw_ad, data_ad, sub_ad = ad.read_h5ad(raw), ad.read_h5ad(data), ad.read_h5ad(sub)
    assert raw_ad.uns["simulation"]["scenario"] == "common-3" and raw_ad.X.dtype == np.int32
    assert data_ad.n_vars == 300 and data_ad.uns["dataset"]["source"] == str(raw)
    assert sub_ad.n_obs == 100 and sorted(p.name for p in tmp_path.iterdir()) == ["data.h5ad", "raw.h5ad", "sub.h5ad"]


def test_cli_rejects_bad_scenario(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["simulate", "--scenario", "batch9-1", "--out", str(tmp_path / "x.h5ad")])
    assert exit_info.value.code == 2 and "unknown scenario 'batch9-1'" in capsys.readouterr().err
    assert not (tmp_path / "x.h5ad").exists()


def test_write_is_atomic_on_failure(tmp_path, sim_small):
    target = tmp_path / "out.h5ad"
    broken = sim_small.copy()
    broken.uns["unwritable"] = object()  # anndata cannot serialize this
    with pytest.raises(Exception):  # noqa: B017 - any writer error will do
        write_h5ad_atomic(broken, target)
    assert list(tmp_path.iterdir()) == []
