"""Bad runs, own methods and own data that used to be accepted without a word.

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
    if mode == "returns_none":
        return None
    if mode == "returns_array":
        return rng.normal(size=(n, 3))
    if mode == "strings":
        return IntegrationResult(embedding=np.array([["a", "b"]] * n, dtype=object))
    if mode == "complex":
        return IntegrationResult(embedding=rng.normal(size=(n, 3)) * (1 + 1j))
    if mode == "sparse_embedding":
        return IntegrationResult(embedding=sp.csr_matrix(rng.normal(size=(n, 3))))
    if mode == "rename_in_place":
        adata.obs_names = [f"x{i}" for i in range(n)]
        return IntegrationResult(embedding=rng.normal(size=(n, 3)))
    if mode == "sys_exit":
        import sys
        sys.exit(0)
    if mode == "os_exit":
        import os
        os._exit(0)
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
    import torch  # noqa: F401 - the runner seeds torch: imported once here, not in every forked run
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
    ("returns_none", "integrate returned NoneType, not an IntegrationResult"),
    ("returns_array", "integrate returned ndarray, not an IntegrationResult"),
    ("strings", "embedding has dtype object; real numbers are needed"),
    ("complex", "embedding has dtype complex128"),
    ("sparse_embedding", "embedding is a sparse matrix; return a dense array"),
    ("rename_in_place", "renamed or reordered the cells of its input in place"),
    ("sys_exit", "the method called sys.exit(0) instead of returning a result"),
    ("os_exit", "ended with exit code 0 without a result or an error"),
])
def test_a_broken_result_is_a_failed_run_saying_why(bad_method, sim_small_path, tmp_path, mode, needle):
    out, info = run_bad(sim_small_path, tmp_path, mode)
    assert info["status"] == "failed", info
    assert needle in info["error"]
    assert "\n" not in info["error"]
    rec = read_run_info(out)
    assert rec["status"] == "failed" and needle in rec["error"]


def test_an_old_run_file_is_not_taken_for_the_result_of_a_run_that_wrote_none(bad_method, sim_small_path,
                                                                              tmp_path):
    out, info = run_bad(sim_small_path, tmp_path, "ok")
    assert info["status"] == "ok"
    out_again = tmp_path / "runs" / "os_exit" / "run.h5ad"
    out_again.parent.mkdir(parents=True)
    out.rename(out_again)
    _, info = run_bad(sim_small_path, tmp_path, "os_exit")
    assert info["status"] == "failed" and read_run_info(out_again)["status"] == "failed"


@pytest.mark.parametrize(("source", "needle"), [
    ("def integrate(adata, batch_key, label_key, params):\n    pass\n",
     "integrate() does not take the keyword argument(s) seed, device; define it as integrate(adata, *, "),
    ("def integrate():\n    pass\n", "integrate() takes no argument for the data"),
])
def test_an_own_method_that_cannot_take_the_call_is_refused_at_plan_time(tmp_path, source, needle):
    from methods.external import ExternalMethodError, external_spec

    (tmp_path / "mine.py").write_text(source)
    with pytest.raises(ExternalMethodError, match=r"^methods\.mine\.module: ") as err:
        external_spec("mine", {"module": "mine.py", "output": "embedding"}, tmp_path, REPO / "envs")
    assert needle in str(err.value)
    (tmp_path / "mine.py").write_text("def integrate(adata, **kwargs):\n    pass\n")
    assert external_spec("mine", {"module": "mine.py", "output": "embedding"}, tmp_path, REPO / "envs").external


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


# --- item 4: unlabelled cells are unlabelled everywhere --------------------------------------------

def raw_counts(n_cells: int = 120, n_genes: int = 300, seed: int = 3) -> ad.AnnData:
    """Raw integer counts, batches b1/b2, cell types t0..t3, raw counts also in layers['counts']."""
    rng = np.random.default_rng(seed)
    a = ad.AnnData(sp.csr_matrix(rng.poisson(2.0, size=(n_cells, n_genes)).astype(np.float32)))
    a.obs_names = [f"c{i}" for i in range(n_cells)]
    a.var_names = [f"g{i}" for i in range(n_genes)]
    a.obs["sample"] = np.repeat(["b1", "b2"], n_cells // 2)
    a.obs["cell_type"] = [f"t{i % 4}" for i in range(n_cells)]
    a.layers["counts"] = a.X.copy()
    return a


def validate(adata, **kw):
    from datasets.ingest import validate_raw

    return validate_raw(adata, **{"dataset": "mine", "batch_key": "sample", "label_key": "cell_type", **kw})


@pytest.mark.filterwarnings("ignore:dataset 'mine'")
def test_missing_and_placeholder_labels_become_one_unlabelled_value(tmp_path):
    a = raw_counts()
    a.obs["cell_type"] = a.obs["cell_type"].astype(object)
    a.obs.iloc[:3, a.obs.columns.get_loc("cell_type")] = [np.nan, "nan", ""]
    a.obs.iloc[3:5, a.obs.columns.get_loc("cell_type")] = ["Unknown", " "]
    clean, prov = validate(a)
    assert list(clean.obs["label"][:5]) == ["unknown"] * 5
    assert set(clean.obs["label"].cat.categories) == {"t0", "t1", "t2", "t3", "unknown"}
    assert prov["n_unlabelled_raw"] == 5
    assert any("5 cells without a label" in n and "left out of the label metrics" in n for n in prov["warnings"])


def test_label_key_equal_to_batch_key_is_refused(tmp_path):
    from datasets.ingest import DataError
    from datasets.local_file import LocalFileError, file_entry

    with pytest.raises(DataError, match="label_key and batch_key are both 'sample'"):
        validate(raw_counts(), label_key="sample")
    path = tmp_path / "mine.h5ad"
    raw_counts().write_h5ad(path)
    with pytest.raises(LocalFileError, match=r"datasets\.mine\.file\.label_key: 'sample' is the batch_key too"):
        file_entry("mine", {"path": str(path), "batch_key": "sample", "label_key": "sample"}, tmp_path, "here")


def scored(data_path, run_path, tmp_path, metrics):
    from metrics.score import score_many

    return score_many(data_path, [run_path], [tmp_path / "metrics.json"], {"metrics": metrics, "n_neighbors": 50})[0]


def test_unlabelled_cells_are_left_out_of_label_metrics(sim_small, tmp_path):
    """A perfect embedding (one tight cluster per cell type) scores NMI = ARI = 1 although 60 of its
    cells are 'unknown' in the data: an 'unknown' type spread over every cluster would lower both."""
    data = sim_small.copy()
    labels = data.obs["label"].astype(str).to_numpy()
    rng = np.random.default_rng(0)
    emb = np.eye(8)[pd.Categorical(labels).codes] * 10 + rng.normal(scale=0.01, size=(data.n_obs, 8))
    unknown = rng.choice(data.n_obs, 60, replace=False)
    labels = labels.astype(object)
    labels[unknown] = "unknown"
    data.obs["label"] = pd.Categorical(labels)
    data_path = tmp_path / "data.h5ad"
    data.write_h5ad(data_path)
    run_file = ad.AnnData(obs=data.obs[["batch", "label"]].copy())
    run_file.obsm["X_emb"] = emb.astype(np.float32)
    run_file.uns["run_json"] = '{"status": "ok", "method": "perfect", "setting": "default", "seed": 0}'
    run_path = tmp_path / "run.h5ad"
    run_file.write_h5ad(run_path)
    res = scored(data_path, run_path, tmp_path, ["nmi", "ari"])
    assert res["status"] == "ok", res
    assert res["n_unlabelled"] == 60 and res["n_cells"] == data.n_obs
    assert res["metrics"]["nmi"] == pytest.approx(1.0) and res["metrics"]["ari"] == pytest.approx(1.0)


def test_a_supervised_method_sees_unlabelled_cells_as_nan(bad_method, sim_small, tmp_path):
    data = sim_small.copy()
    labels = data.obs["label"].astype(str).to_numpy().astype(object)
    labels[:25] = "unknown"
    data.obs["label"] = pd.Categorical(labels)
    path = tmp_path / "data.h5ad"
    data.write_h5ad(path)
    out, info = run_bad(path, tmp_path, "labels_seen", method="bad_sup", label_missing=0.2)
    assert info["status"] == "ok", info["error"]
    rec = read_run_info(out)
    assert "unknown" not in rec["extra"]["values"]
    written = ad.read_h5ad(out)
    hidden = written.obs["label_hidden"].to_numpy()
    assert rec["extra"]["n_nan"] == 25 + hidden.sum() and not hidden[:25].any()  # nothing to hide there
    assert (written.obs["label"].astype(str).to_numpy() == labels).all()  # the file keeps the truth


# --- item 5: counts must be counts, and the advice names the layer that holds them --------------------

def log_normalised(a: ad.AnnData) -> ad.AnnData:
    import scanpy as sc

    out = a.copy()
    sc.pp.normalize_total(out, target_sum=1e4)
    sc.pp.log1p(out)
    return out


def with_raw_counts_in_raw() -> ad.AnnData:
    a = raw_counts()
    del a.layers["counts"]
    a.raw = a.copy()
    return log_normalised(a)


def per_cell_column(key: str, values) -> ad.AnnData:
    a = raw_counts()
    a.obs[key] = values
    return a


def change_matrix(fn):
    def change(a):
        a.X = fn(a.X)
        del a.layers["counts"]
        return a
    return change


@pytest.mark.parametrize(("adata", "kw", "needle"), [
    (lambda: log_normalised(raw_counts()), {},
     "looks log-normalised, not counts (expm1 of every cell sums to 1e+04 (normalize_total + log1p)); layer "
     "'counts' holds integer counts: set counts: layers/counts"),
    (lambda: log_normalised(raw_counts()), {"counts_integer": False}, "set counts: layers/counts"),
    (lambda: change_matrix(lambda X: np.log1p(X.toarray()))(raw_counts()), {"counts_integer": False},
     "looks log-normalised, not counts (expm1 of its values gives integers"),
    (lambda: change_matrix(lambda X: (X.toarray() > 1))(raw_counts()), {}, "is boolean (True/False), not counts"),
    (lambda: change_matrix(lambda X: (X > 1).astype(np.float32))(raw_counts()), {},
     "holds only 0 and 1: binarised data, not counts"),
    (lambda: change_matrix(lambda X: X * 1.5)(raw_counts()), {}, "set counts_integer: false"),
    (lambda: with_raw_counts_in_raw(), {}, "adata.raw holds integer counts: store them as a layer"),
    (lambda: per_cell_column("n_counts", np.arange(120) * 1.5), {"label_key": "n_counts"},
     "obs['n_counts'] (label_key) holds continuous numbers (e.g. 1.5, 4.5, 7.5), not cell types"),
    (lambda: per_cell_column("barcode", [f"AC{i}" for i in range(120)]), {"batch_key": "barcode"},
     "obs['barcode'] (batch_key) has 120 distinct values for 120 cells: a value per cell, not batches"),
    (lambda: raw_counts().T, {}, "'sample' (batch_key) is a var column, not an obs column: the matrix looks "
                                 "transposed"),
], ids=["lognorm_x_counts_in_layer", "lognorm_declared_non_integer", "log1p_only", "boolean", "binary",
        "scaled_counts_no_layer", "counts_in_raw", "continuous_label", "batch_per_cell", "transposed"])
def test_counts_that_are_not_counts_are_refused_naming_what_to_use(adata, kw, needle):
    from datasets.ingest import DataError

    with pytest.raises(DataError, match="^dataset 'mine': ") as err:
        validate(adata(), **kw)
    assert needle in str(err.value)
    assert "\n" not in str(err.value)


def test_float16_counts_are_read():
    a = raw_counts()
    a.X = a.X.toarray().astype(np.float16)
    clean, prov = validate(a)
    assert prov["counts_integer"] is True and clean.X.dtype == np.float32


def test_counts_within_float_tolerance_are_counts_and_made_exact():
    a = raw_counts()
    a.X = a.X.copy()
    a.X.data = a.X.data + np.float32(2e-5)
    clean, prov = validate(a)
    assert prov["counts_integer"] is True
    assert (clean.X.data == np.round(clean.X.data)).all()


@pytest.mark.filterwarnings("ignore:dataset 'mine'")
def test_non_integer_counts_by_design_name_the_integer_layer_in_a_warning():
    a = raw_counts()
    a.layers["raw"] = a.X.copy()
    a.X = a.X * 0.9  # e.g. ambient-corrected counts: non-integer on purpose
    del a.layers["counts"]
    _, prov = validate(a, counts_integer=False)
    assert any("layer 'raw' holds integer counts" in n for n in prov["warnings"])


def test_a_transposed_file_is_named_at_plan_time(tmp_path):
    from datasets.local_file import LocalFileError, check_at_plan, file_entry

    path = tmp_path / "mine.h5ad"
    raw_counts().T.write_h5ad(path)
    entry = file_entry("mine", {"path": str(path), "batch_key": "sample", "label_key": "cell_type"}, tmp_path, "here")
    with pytest.raises(LocalFileError, match=r"datasets\.mine\.file\.batch_key: 'sample' is a var column"):
        check_at_plan("mine", entry, tmp_path / "datasets.lock")


# --- item 3: a run records the code that made it; an edited own method reruns ------------------------

OWN_METHOD = '''"""A user's own method: PCA of the log-normalised HVGs."""
from methods.base import IntegrationResult

SPEC = {"output": "embedding", "defaults": {"n_comps": 5}}


def integrate(adata, *, batch_key, label_key, params, seed, device):
    from sklearn.decomposition import PCA

    return IntegrationResult(embedding=PCA(n_components=params["n_comps"], random_state=seed).fit_transform(
        adata.X.toarray()))
'''


@pytest.mark.slow
def test_an_edited_own_method_is_planned_again_and_its_runs_record_the_code(tmp_path):
    import hashlib

    import yaml
    from test_own_data_and_method import snakemake, users_h5ad

    users_h5ad(tmp_path / "mydata" / "mine.h5ad")
    module = tmp_path / "mymethods" / "my_pca.py"
    module.parent.mkdir()
    module.write_text(OWN_METHOD)
    (tmp_path / "study").mkdir()
    (tmp_path / "run").mkdir()
    (tmp_path / "study" / "config.yaml").write_text(yaml.safe_dump({
        "out": "../out", "seeds": [0],
        "datasets": {"mine": {"file": {"path": "../mydata/mine.h5ad", "batch_key": "sample",
                                       "label_key": "cell_type", "counts": "layers/counts"}}},
        "preprocess": {"n_hvg": 200, "min_genes": 50, "min_cells": 3},
        "methods": {"my_pca": {"module": "../mymethods/my_pca.py"}, "unintegrated": None},
        "run_time_limit_min": 30}))
    res = snakemake(tmp_path, "--until", "integrate", timeout=900)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    runs = tmp_path / "out" / "runs" / "mine"
    rec = read_run_info(runs / "my_pca" / "default" / "seed0" / "run.h5ad")
    assert rec["status"] == "ok", rec["error"]
    assert rec["code"] == {"module": str(module.resolve()), "path": str(module.resolve()),
                           "sha256": hashlib.sha256(module.read_bytes()).hexdigest()}
    assert rec["run_time_limit_s"] == 1800  # the config's limit reached the runner
    builtin = read_run_info(runs / "unintegrated" / "default" / "seed0" / "run.h5ad")["code"]
    assert builtin["module"] == "methods.unintegrated" and len(builtin["sha256"]) == 64

    module.write_text(OWN_METHOD.replace('"n_comps": 5', '"n_comps": 4'))
    dry = snakemake(tmp_path, "--until", "integrate", "-n", "-p", timeout=300)
    assert dry.returncode == 0, dry.stderr[-3000:]
    # the edited method's run is planned again, the built-in one's is not
    assert "--method my_pca" in dry.stdout and "--method unintegrated" not in dry.stdout, dry.stdout[-3000:]
