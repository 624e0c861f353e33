"""Bad runs, own methods and own data that used to be accepted without a word (issue 27, items 2-5).

A method's result is checked against what the method was given (not the object it may have
changed); constant, zero-width and non-finite outputs are refused; the study's time limit per
run stops a method that never returns; a run records the code that made it and an edited own
method reruns; unlabelled cells are unlabelled everywhere; counts must be counts.
"""

from __future__ import annotations

import sys
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from methods import registry
from methods.registry import MethodSpec
from methods.runner import read_run_info, run

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))

# A user's own method that misbehaves in the ways a user's method does (params["mode"]).
BAD_METHOD = '''
import time

import numpy as np
import scanpy as sc
import scipy.sparse as sp

from methods.base import IntegrationResult


def integrate(adata, *, batch_key, label_key, params, seed, device):
    mode = params["mode"]
    n = adata.n_obs
    rng = np.random.default_rng(seed)
    if mode == "filter_in_place":  # scanpy's default is in place
        sc.pp.filter_cells(adata, min_genes=int(np.median(np.asarray((adata.X > 0).sum(axis=1)).ravel())))
        return IntegrationResult(embedding=rng.normal(size=(adata.n_obs, 3)))
    if mode == "reorder_in_place":
        adata._inplace_subset_obs(np.arange(n)[::-1])
        return IntegrationResult(embedding=rng.normal(size=(n, 3)))
    if mode == "constant":
        return IntegrationResult(embedding=np.ones((n, 4)))
    if mode == "zero_width":
        return IntegrationResult(embedding=np.zeros((n, 0)))
    if mode == "inf_corrected":
        X = adata.X.toarray()
        X[0, 0] = np.inf
        return IntegrationResult(corrected=X)
    if mode == "constant_corrected":
        return IntegrationResult(corrected=sp.csr_matrix(adata.shape, dtype=np.float32))
    if mode == "fewer_genes":
        return IntegrationResult(corrected=adata.X[:, :10])
    if mode == "empty_graph":
        return IntegrationResult(connectivities=sp.csr_matrix((n, n)))
    if mode == "nan_graph":
        g = sp.random(n, n, density=0.05, format="csr", random_state=0)
        g.data[0] = np.nan
        return IntegrationResult(connectivities=g)
    if mode == "short_labels":
        return IntegrationResult(embedding=rng.normal(size=(n, 3)), predicted_labels=np.array(["a"] * 3))
    if mode == "hang":
        time.sleep(600)
    if mode == "labels_seen":  # what a supervised method sees as labels
        labels = adata.obs[label_key]
        return IntegrationResult(embedding=rng.normal(size=(n, 3)), extra={
            "n_nan": int(labels.isna().sum()), "values": sorted(labels.dropna().astype(str).unique())})
    return IntegrationResult(embedding=rng.normal(size=(n, 3)))
'''


@pytest.fixture
def bad_method(tmp_path, monkeypatch):
    """Method ``bad`` (and supervised ``bad_sup``): a .py file outside the repo, as a user's own."""
    path = tmp_path / "bad_method.py"
    path.write_text(BAD_METHOD)
    for name, supervised in (("bad", False), ("bad_sup", True)):
        monkeypatch.setitem(registry.METHODS, name, MethodSpec(
            str(path), "embedding", "lognorm", "data", supervised=supervised, defaults={"mode": "ok"},
            external=True))
    return path


def run_bad(data_path, tmp_path, mode, method="bad", **kw):
    out = tmp_path / "runs" / mode / "run.h5ad"
    info = run(str(data_path), str(out), method, "default", {"mode": mode}, seed=0, **kw)
    return out, info


# --- item 2: the result is checked against what the method was given ------------------------------

@pytest.mark.parametrize(("mode", "needle"), [
    ("filter_in_place", "changed its input in place: adata has"),
    ("reorder_in_place", "reordered the cells of its input in place"),
    ("constant", "embedding is constant"),
    ("zero_width", "embedding has no columns"),
    ("inf_corrected", "corrected matrix contains NaN or inf"),
    ("constant_corrected", "corrected matrix is constant"),
    ("fewer_genes", "corrected matrix has shape"),
    ("empty_graph", "graph connectivities has no edge"),
    ("nan_graph", "graph connectivities contains NaN or inf"),
    ("short_labels", "predicted_labels has 3 entries"),
])
def test_a_broken_result_is_a_failed_run_saying_why(bad_method, sim_small_path, tmp_path, mode, needle):
    out, info = run_bad(sim_small_path, tmp_path, mode)
    assert info["status"] == "failed", info
    assert needle in info["error"]
    assert "\n" not in info["error"]
    rec = read_run_info(out)
    assert rec["status"] == "failed" and needle in rec["error"]


def test_a_run_file_has_every_input_cell_in_input_order(bad_method, sim_small_path, tmp_path):
    out, info = run_bad(sim_small_path, tmp_path, "ok")
    assert info["status"] == "ok"
    given = ad.read_h5ad(sim_small_path)
    written = ad.read_h5ad(out)
    assert written.obs_names.equals(given.obs_names)
    assert (written.obs["label"].astype(str).to_numpy() == given.obs["label"].astype(str).to_numpy()).all()


def test_the_study_time_limit_stops_a_run_and_names_the_key(bad_method, sim_small_path, tmp_path):
    # not retried: another attempt would get the same limit
    out, info = run_bad(sim_small_path, tmp_path, "hang", run_time_limit_s=3, attempt=1, attempts=3)
    assert info["status"] == "failed" and info["wall_s"] < 60
    assert read_run_info(out)["error"] == ("run time limit: the method was stopped after 0.05 min (config "
                                           "run_time_limit_min); raise run_time_limit_min to give it longer")
