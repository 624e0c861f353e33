"""The scoring CLI on tiny run files: ok, failed, graph-only, semi-supervised, unlabelled."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from metrics.catalog import ALL_METRICS, OPT_IN
from metrics.score import resolve_options, score_many

REPO = Path(__file__).resolve().parent.parent


def make_data(path: Path, n_per=40, n_types=3, seed=0, labels_unknown=False) -> ad.AnnData:
    """A tiny preprocessed dataset: 3 cell types x 2 batches, X log-like, X_pca."""
    rng = np.random.default_rng(seed)
    labels = np.repeat([f"T{i}" for i in range(n_types)], 2 * n_per)
    batch = np.tile(np.repeat(["B0", "B1"], n_per), n_types)
    centers = rng.normal(size=(n_types, 30)) * 3
    lab_i = np.unique(labels, return_inverse=True)[1]
    X = np.log1p(np.abs(centers[lab_i] + rng.normal(size=(labels.size, 30)))).astype(np.float32)
    obs = pd.DataFrame({"batch": pd.Categorical(batch),
                        "label": pd.Categorical(["unknown"] * labels.size if labels_unknown else labels)},
                       index=[f"cell{i}" for i in range(labels.size)])
    data = ad.AnnData(X=sp.csr_matrix(X), obs=obs)
    data.obsm["X_pca"] = (X - X.mean(0)) @ np.linalg.svd(X - X.mean(0), full_matrices=False)[2][:10].T
    data.uns["dataset"] = {"name": "tiny"}
    data.write_h5ad(path)
    return data


def write_run(path: Path, data: ad.AnnData, status="ok", emb=None, graph=None, hidden=None, pred=None):
    run = ad.AnnData(obs=data.obs[["batch", "label"]].copy())
    if emb is not None:
        run.obsm["X_emb"] = emb.astype(np.float32)
    if graph is not None:
        run.obsp["connectivities"] = graph
        run.obsp["distances"] = graph
    if hidden is not None:
        run.obs["label_hidden"] = hidden
        run.obs["predicted_label"] = pd.Categorical(pred)
    record = {"method": "m", "setting": "default", "seed": 0, "status": status,
              "error": "" if status == "ok" else "RuntimeError: diverged", "label_missing": 0.0}
    run.uns["run_json"] = json.dumps(record)
    path.parent.mkdir(parents=True, exist_ok=True)
    run.write_h5ad(path)
    return path


def knn_graph(X, k=10):
    from metrics.neighbors import exact_knn

    res = exact_knn(X, k + 1)
    return sp.csr_matrix(res.knn_graph_distances)


@pytest.fixture()
def tiny(tmp_path):
    data = make_data(tmp_path / "data.h5ad")
    emb = np.asarray(data.obsm["X_pca"])
    labels = data.obs["label"].astype(str).to_numpy()
    hidden = np.zeros(data.n_obs, bool)
    hidden[::3] = True
    pred = labels.copy()
    pred[::6] = "T0"
    runs = {
        "ok": write_run(tmp_path / "runs/tiny/m/default/seed0/run.h5ad", data, emb=emb, hidden=hidden, pred=pred),
        "failed": write_run(tmp_path / "runs/tiny/m/default/seed1/run.h5ad", data, status="failed"),
        "graph": write_run(tmp_path / "runs/tiny/bbknn/default/seed0/run.h5ad", data, graph=knn_graph(emb)),
    }
    return tmp_path, data, runs


def test_options_are_checked():
    with pytest.raises(ValueError, match="unknown metrics option"):
        resolve_options({"n_neighbours": 90})
    with pytest.raises(ValueError, match="unknown metric name"):
        resolve_options({"metrics": ["nmi", "bogus"]})
    assert resolve_options(None)["metrics"] == [m for m in ALL_METRICS if m not in OPT_IN]
    assert resolve_options({"extra_metrics": ["ilisi_scaled"]})["metrics"][-1] == "ilisi_scaled"
    with pytest.raises(ValueError, match="'extra_metrics': bogus"):
        resolve_options({"extra_metrics": ["bogus"]})


def test_score_subset_ok_failed_graph(tiny):
    tmp, data, runs = tiny
    outs = [tmp / f"{k}.json" for k in runs]
    opts = {"metrics": ["ilisi", "pcr_comparison", "macro_f1"]}
    res = score_many(tmp / "data.h5ad", list(runs.values()), outs, opts)
    ok, failed, graph = (json.loads(p.read_text()) for p in outs)
    assert ok["status"] == "ok" and ok["dataset"] == "tiny" and ok["seed"] == 0
    assert 0.0 <= ok["metrics"]["ilisi"] <= 1.0
    assert ok["metrics"]["pcr_comparison"] == pytest.approx(0.0, abs=1e-6)  # embedding = unintegrated PCA
    # hidden cells: every 6th cell predicted T0, i.e. half of the hidden cells of T1/T2 wrong
    assert 0.3 < ok["metrics"]["macro_f1"] < 0.9
    assert len(ok["per_cell"]["ilisi"]) == data.n_obs
    assert all(v == round(v, 3) for v in ok["per_cell"]["ilisi"])
    assert set(ok["timing"]) >= {"knn", "total"}
    assert failed["status"] == "failed" and "diverged" in failed["error"]
    assert failed["metrics"] == {m: None for m in opts["metrics"]}
    assert set(failed["na_reasons"].values()) == {"run failed"}
    assert graph["metrics"]["pcr_comparison"] is None
    assert "needs an embedding" in graph["na_reasons"]["pcr_comparison"]
    assert res[0]["metrics"] == ok["metrics"]


def test_unlabelled_data_nulls_bio_metrics(tmp_path):
    data = make_data(tmp_path / "data.h5ad", labels_unknown=True)
    run = write_run(tmp_path / "run.h5ad", data, emb=np.asarray(data.obsm["X_pca"]))
    out = tmp_path / "m.json"
    score_many(tmp_path / "data.h5ad", [run], [out], {"metrics": ["asw_label", "ilisi"]})
    res = json.loads(out.read_text())
    assert res["metrics"]["asw_label"] is None and res["na_reasons"]["asw_label"] == "dataset unlabelled"
    assert res["metrics"]["ilisi"] is not None


def test_bad_data_file_gives_clear_error(tmp_path):
    data = make_data(tmp_path / "data.h5ad")
    run = write_run(tmp_path / "run.h5ad", data, emb=np.asarray(data.obsm["X_pca"]))
    with pytest.raises(KeyError, match="obs has no column 'celltype'"):
        score_many(tmp_path / "data.h5ad", [run], [tmp_path / "m.json"], {"label_key": "celltype"})
    with pytest.raises(ValueError, match="--runs has 1 files but --out has 2"):
        score_many(tmp_path / "data.h5ad", [run], [tmp_path / "a.json", tmp_path / "b.json"])


@pytest.mark.slow
def test_cli_full_set_ok_failed_graph_and_determinism(tiny):
    """All metrics through ``python -m metrics score`` in one process; same inputs -> same values."""
    tmp, data, runs = tiny
    outs = [tmp / f"{k}.json" for k in runs]
    opts = json.dumps({"moransi_min_cells": 30, "moransi_cutoff": 0.0})
    cmd = [sys.executable, "-m", "metrics", "score", "--data", str(tmp / "data.h5ad"),
           "--runs", *map(str, runs.values()), "--out", *map(str, outs), "--options", opts]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    proc = subprocess.run(cmd, cwd=tmp, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    ok, failed, graph = (json.loads(p.read_text()) for p in outs)
    assert set(ok["metrics"]) == set(ALL_METRICS) - OPT_IN
    missing = {m for m, v in ok["metrics"].items() if v is None}
    # every label is in both batches: scib (the default reference) finds no isolated label
    # and no cell type is found in one batch only
    assert missing - {"batch_cluster_nmi", "batch_cluster_ari"} == {"isolated_label_asw", "isolated_label_f1",
                                                                     "jaccard_batch_unique"}
    assert ok["na_reasons"]["jaccard_batch_unique"] == "no cell type is found in one batch only"
    assert "no isolated label" in ok["na_reasons"]["isolated_label_f1"] and ok["extra"]["isolated_labels"] == []
    assert ok["metrics"]["nmi"] > 0.9 and ok["metrics"]["positive_rate"] > 0.9  # types well separated
    assert failed["status"] == "failed"
    assert graph["status"] == "ok"
    for m in ("nmi", "ari", "clisi", "ilisi", "graph_connectivity", "kbet", "nmi_fixed", "positive_rate"):
        assert graph["metrics"][m] is not None, (m, graph["na_reasons"].get(m))
    for m in ("asw_label", "bras", "pcr_comparison", "moransi", "kbet_acceptance"):
        assert graph["metrics"][m] is None and "embedding" in graph["na_reasons"][m]
    again = score_many(tmp / "data.h5ad", [runs["ok"]], [tmp / "again.json"], json.loads(opts))[0]
    assert again["metrics"] == ok["metrics"]


def test_silhouettes_subsampled_above_asw_max_cells(tmp_path):
    """Above asw_max_cells the quadratic silhouettes run on a stratified subsample, and say so."""
    data = make_data(tmp_path / "data.h5ad")
    run = write_run(tmp_path / "run.h5ad", data, emb=np.asarray(data.obsm["X_pca"]))
    opts = {"metrics": ["asw_label", "asw_batch"]}
    exact, sub = tmp_path / "exact.json", tmp_path / "sub.json"
    score_many(tmp_path / "data.h5ad", [run], [exact], opts)
    score_many(tmp_path / "data.h5ad", [run], [sub], {**opts, "asw_max_cells": data.n_obs // 3})
    exact, sub = json.loads(exact.read_text()), json.loads(sub.read_text())
    assert "asw_cells" not in exact["extra"]
    assert data.n_obs // 3 - 12 <= sub["extra"]["asw_cells"] <= data.n_obs // 3 + 12
    for m in opts["metrics"]:  # a stratified third of the cells gives nearly the same value
        assert sub["metrics"][m] != exact["metrics"][m]
        assert abs(sub["metrics"][m] - exact["metrics"][m]) < 0.05


def test_jaccard_of_batch_unique_cell_types(tmp_path):
    from metrics.paper_metrics import batch_unique_labels

    full = make_data(tmp_path / "full.h5ad", n_per=60)
    # T2 only in batch B1: a cell type unique to one batch (sysVI Fig. 4's unbalanced populations)
    keep = ~((full.obs["label"] == "T2") & (full.obs["batch"] == "B0")).to_numpy()
    data = full[keep].copy()
    data.write_h5ad(tmp_path / "data.h5ad")
    labels = data.obs["label"].astype(str).to_numpy()
    assert batch_unique_labels(labels, data.obs["batch"].astype(str).to_numpy()) == ["T2"]
    rng = np.random.default_rng(0)
    centres = {"T0": 0.0, "T1": 20.0, "T2": 40.0}
    apart = np.stack([np.r_[centres[t], 0.0] for t in labels]) + rng.normal(size=(labels.size, 2))
    merged = apart.copy()
    merged[labels == "T2", 0] -= 20  # T2 on top of T1: the batch-unique type is mixed away
    runs = [write_run(tmp_path / f"runs/d/m/{name}/seed0/run.h5ad", data, emb=emb)
            for name, emb in (("apart", apart), ("merged", merged))]
    outs = [tmp_path / "apart.json", tmp_path / "merged.json"]
    score_many(tmp_path / "data.h5ad", runs, outs, {"metrics": ["jaccard_batch_unique", "jaccard"],
                                                     "n_neighbors": 50})
    apart_res, merged_res = (json.loads(p.read_text())["metrics"] for p in outs)
    assert apart_res["jaccard_batch_unique"] > 0.8
    # the mean over all types (T0 intact) hides what the batch-unique score shows
    assert merged_res["jaccard_batch_unique"] < 0.5 < merged_res["jaccard"]
    # every cell type in both batches: not applicable, with the reason
    run = write_run(tmp_path / "runs/f/m/x/seed0/run.h5ad", full, emb=np.asarray(full.obsm["X_pca"]))
    score_many(tmp_path / "full.h5ad", [run], [tmp_path / "full.json"], {"metrics": ["jaccard_batch_unique"]})
    res = json.loads((tmp_path / "full.json").read_text())
    assert res["metrics"]["jaccard_batch_unique"] is None
    assert res["na_reasons"]["jaccard_batch_unique"] == "no cell type is found in one batch only"
def test_kbet_subsampled_above_kbet_max_cells(tmp_path):
    """Above kbet_max_cells scIB kBET runs on a stratified subsample with its own 50-NN graph (the
    per-label diffusion maps are the costly step) and records its size."""
    data = make_data(tmp_path / "data.h5ad", n_per=60)
    run = write_run(tmp_path / "run.h5ad", data, emb=np.asarray(data.obsm["X_pca"]))
    exact, sub = tmp_path / "exact.json", tmp_path / "sub.json"
    score_many(tmp_path / "data.h5ad", [run], [exact], {"metrics": ["kbet"]})
    score_many(tmp_path / "data.h5ad", [run], [sub], {"metrics": ["kbet"], "kbet_max_cells": 240})
    exact, sub = json.loads(exact.read_text()), json.loads(sub.read_text())
    assert "kbet_cells" not in exact["extra"] and 228 <= sub["extra"]["kbet_cells"] <= 252
    assert exact["metrics"]["kbet"] > 0.5  # the two batches of each type are mixed
    assert abs(sub["metrics"]["kbet"] - exact["metrics"]["kbet"]) < 0.1


def test_reference_options_are_checked():
    with pytest.raises(ValueError, match="graph_connectivity_reference must be 'scib' or 'scib_metrics'"):
        resolve_options({"graph_connectivity_reference": "scanpy"})


def test_shared_type_ilisi_and_the_standardised_embedding(tmp_path):
    """ilisi_shared leaves out a type found in one batch (it cannot mix); the scaled metrics see a
    batch axis that a tiny scale hides from the raw embedding (sysVI Fig. 2a: silenced dimensions)."""
    rng = np.random.default_rng(0)
    data = make_data(tmp_path / "data.h5ad", n_per=120)  # unique types larger than the 90 neighbours
    labels = data.obs["label"].astype(str).to_numpy()
    batch = data.obs["batch"].astype(str).to_numpy()
    data.obs["label"] = pd.Categorical(np.where((labels == "T2") & (batch == "B1"), "T3", labels))  # T2, T3 unique
    data.write_h5ad(tmp_path / "data.h5ad")
    centers = rng.normal(size=(4, 2)) * 20
    lab_i = np.unique(data.obs["label"].astype(str), return_inverse=True)[1]
    types = centers[lab_i] + rng.normal(size=(data.n_obs, 2))
    hidden_batch = (batch == "B1")[:, None] * 1e-3 + rng.normal(size=(data.n_obs, 1)) * 1e-5
    run = write_run(tmp_path / "run.h5ad", data, emb=np.hstack([types, hidden_batch]))
    out = tmp_path / "m.json"
    score_many(tmp_path / "data.h5ad", [run], [out], {"metrics": ["ilisi", "ilisi_shared", "nmi_fixed"],
                                                      "extra_metrics": ["ilisi_scaled", "nmi_fixed_scaled"]})
    m = json.loads(out.read_text())["metrics"]
    per_cell = np.asarray(json.loads(out.read_text())["per_cell"]["ilisi"])
    shared = np.isin(data.obs["label"].astype(str), ["T0", "T1"])
    assert m["ilisi_shared"] == pytest.approx(np.median(per_cell[shared]) - 1, abs=2e-3)  # (median - 1) / (2 - 1)
    assert np.median(per_cell[~shared]) < 1.05  # a unique type cannot mix
    assert m["ilisi_shared"] > 0.8 and m["ilisi"] < m["ilisi_shared"] - 0.05  # the unique types pull ilisi down
    assert m["ilisi_scaled"] < 0.05  # standardised, the hidden axis separates the batches
    # each type splits by batch at r = 2, which the majority-label NMI fixed does not see
    assert m["nmi_fixed_scaled"] == pytest.approx(1.0) and m["nmi_fixed"] == pytest.approx(1.0)
