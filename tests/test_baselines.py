"""Baselines (Scanorama, BBKNN, ComBat, scVI, scANVI): output contracts and batch mixing.

Data: a small simulated 2-batch dataset with a strong gene-wise batch effect and four cell
types (made here so these tests do not depend on the simulator's parameters). Batch mixing
is scaled iLISI (scib-metrics) on a 90-NN graph of the output (scIB's k, perplexity 30),
compared with the unintegrated PCA; for BBKNN's graph, iLISI over its graph neighbours with
equal weights (``graph_ilisi``).
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import anndata as ad  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
import scipy.sparse as sp  # noqa: E402

from methods import registry  # noqa: E402
from methods.base import IntegrationResult, ParamError  # noqa: E402


def make_batch_data(n_per_batch: int = 200, n_genes: int = 200, n_types: int = 4, n_batches: int = 2,
                    seed: int = 0, interleave: bool = True, batch_sd: float = 0.4) -> ad.AnnData:
    """Preprocessed-like AnnData: counts in layers, log-normalized X, X_pca, batch/label/system.

    Cell types differ by log-fold changes on a few genes; each batch multiplies every gene's
    mean by a log-normal factor (sd ``batch_sd``), which separates batches in PCA. ``interleave``
    alternates cells of the batches so that any method that regroups cells by batch and
    forgets to restore the order is caught.
    """
    import scanpy as sc

    rng = np.random.default_rng(seed)
    base = rng.lognormal(0.0, 1.0, n_genes) * 0.5
    type_fc = np.where(rng.random((n_types, n_genes)) < 0.15, rng.lognormal(1.2, 0.4, (n_types, n_genes)), 1.0)
    batch_fc = rng.lognormal(0.0, batch_sd, (n_batches, n_genes))
    n = n_per_batch * n_batches
    batch = np.repeat(np.arange(n_batches), n_per_batch)
    if interleave:
        batch = np.tile(np.arange(n_batches), n_per_batch)
    label = rng.integers(0, n_types, n)
    lib = rng.lognormal(0.0, 0.3, n)
    mean = base[None, :] * type_fc[label] * batch_fc[batch] * lib[:, None] * 10
    counts = rng.poisson(rng.gamma(5.0, mean / 5.0)).astype(np.float32)
    obs = pd.DataFrame({
        "batch": pd.Categorical([f"Batch{b + 1}" for b in batch]),
        "label": pd.Categorical([f"Group{t + 1}" for t in label]),
        "system": pd.Categorical(["sys0"] * n),
    }, index=[f"cell{i}" for i in range(n)])
    adata = ad.AnnData(X=sp.csr_matrix(counts), obs=obs,
                       var=pd.DataFrame(index=[f"gene{g}" for g in range(n_genes)]))
    adata.layers["counts"] = adata.X.copy()
    sc.pp.normalize_total(adata, target_sum=1e4)
    sc.pp.log1p(adata)
    adata.X = sp.csr_matrix(adata.X, dtype=np.float32)
    adata.obsm["X_pca"] = sc.pp.pca(adata.X.toarray(), n_comps=20, random_state=0)
    return adata


def knn_of(emb: np.ndarray, k: int = 90):
    """scib-metrics NeighborsResults of an exact Euclidean kNN (self excluded)."""
    from scib_metrics.nearest_neighbors import NeighborsResults
    from sklearn.neighbors import NearestNeighbors

    dist, idx = NearestNeighbors(n_neighbors=k + 1).fit(emb).kneighbors(emb)
    return NeighborsResults(indices=idx[:, 1:], distances=dist[:, 1:])


def graph_neighbors(distances, k: int):
    """NeighborsResults from a sparse kNN distance graph: each row's ``k`` nearest stored entries."""
    from scib_metrics.nearest_neighbors import NeighborsResults

    distances = sp.csr_matrix(distances)
    idx = np.zeros((distances.shape[0], k), dtype=np.int64)
    dist = np.zeros((distances.shape[0], k))
    for i in range(distances.shape[0]):
        start, end = distances.indptr[i], distances.indptr[i + 1]
        cols, vals = distances.indices[start:end], distances.data[start:end]
        assert cols.size >= k, f"row {i} has only {cols.size} neighbours"
        best = np.argsort(vals, kind="stable")[:k]
        idx[i], dist[i] = cols[best], vals[best]
    return NeighborsResults(indices=idx, distances=dist)


def ilisi(neighbors, batches) -> float:
    import scib_metrics

    return float(scib_metrics.ilisi_knn(neighbors, np.asarray(batches).astype(str)))


def graph_ilisi(indices: np.ndarray, batches) -> float:
    """Scaled iLISI with every neighbour weighted equally: median over cells of the inverse
    Simpson index of batch proportions among its neighbours, scaled to [0, 1].

    Written here because scib-metrics' LISI weights neighbours by distance (which for a
    graph method only re-measures the unintegrated PCA) and its perplexity search degenerates
    when all distances are equal.
    """
    codes = np.unique(np.asarray(batches).astype(str), return_inverse=True)[1]
    n_batches = codes.max() + 1
    props = np.stack([(codes[indices] == b).mean(axis=1) for b in range(n_batches)], axis=1)
    lisi = 1.0 / (props**2).sum(axis=1)
    return float((np.median(lisi) - 1) / (n_batches - 1))


def label_agreement(emb: np.ndarray, labels, k: int = 15) -> float:
    """Mean fraction of a cell's k nearest neighbours sharing its label (bio structure kept)."""
    nn = knn_of(emb, k)
    labels = np.asarray(labels).astype(str)
    return float((labels[nn.indices] == labels[:, None]).mean())


def run_method(name: str, adata, seed: int = 0, **params) -> IntegrationResult:
    import importlib

    spec = registry.get(name)
    merged = registry.merge_params(name, params)
    module = importlib.import_module(spec.module)
    result = module.integrate(adata, batch_key="batch", label_key="label", params=merged, seed=seed,
                              device="cpu")
    assert isinstance(result, IntegrationResult)
    result.check(adata.n_obs)
    return result


@pytest.fixture(scope="module")
def data():
    return make_batch_data()


@pytest.fixture(scope="module")
def unintegrated_ilisi(data):
    return ilisi(knn_of(data.obsm["X_pca"]), data.obs["batch"])


@pytest.fixture(autouse=True)
def _one_thread():
    import torch

    torch.set_num_threads(1)


def test_data_has_a_batch_effect(data, unintegrated_ilisi):
    # iLISI is scaled to [0, 1]; a well mixed 2-batch graph scores near 1.
    assert unintegrated_ilisi < 0.3
    assert label_agreement(data.obsm["X_pca"], data.obs["label"]) > 0.6


# ----------------------------------------------------------------------------- Scanorama
def test_scanorama_embedding_mixes_batches_in_input_order(data, unintegrated_ilisi):
    res = run_method("scanorama", data, dimred=20)
    assert res.embedding.shape == (data.n_obs, 20) and res.corrected is None
    assert ilisi(knn_of(res.embedding), data.obs["batch"]) > unintegrated_ilisi + 0.2
    # Rows must be in input order: with cells interleaved by batch, a batch-grouped (unmapped)
    # embedding would put random labels next to each other (agreement ~ 1 / n_types).
    assert label_agreement(res.embedding, data.obs["label"]) > 0.8


def test_scanorama_order_mapping_round_trips():
    from methods.scanorama import batch_order, inverse_permutation

    batches = np.array(["b", "a", "b", "c", "a"])
    groups, order = batch_order(batches)
    assert [list(g) for g in groups] == [[1, 4], [0, 2], [3]]
    values = np.arange(5) * 10
    assert np.array_equal(values[order][inverse_permutation(order)], values)


def test_scanorama_corrected_rows_and_genes_in_input_order(data):
    # Shuffle gene order so that Scanorama's alphabetical gene sorting would show.
    shuffled = data[:, np.random.default_rng(1).permutation(data.n_vars)].copy()
    res = run_method("scanorama", shuffled, output="corrected", dimred=20)
    assert sp.issparse(res.corrected) and res.corrected.shape == shuffled.shape
    corrected = res.corrected.toarray()
    X = shuffled.X.toarray()
    X /= np.linalg.norm(X, axis=1, keepdims=True)  # Scanorama's own cell L2 normalization
    # Correction shifts a batch smoothly, so among the cells of its own batch each corrected
    # cell is closest (cosine) to its own input cell; a row mix-up would break this.
    cos = (corrected / np.linalg.norm(corrected, axis=1, keepdims=True)) @ X.T
    batches = shuffled.obs["batch"].to_numpy()
    for batch in np.unique(batches):
        rows = np.flatnonzero(batches == batch)
        assert (cos[np.ix_(rows, rows)].argmax(axis=1) == np.arange(rows.size)).mean() > 0.95
    # Gene columns line up: per-gene correlation of corrected vs input is high.
    gene_corr = [np.corrcoef(corrected[:, g], X[:, g])[0, 1] for g in range(20)]
    assert np.nanmean(gene_corr) > 0.8


def test_scanorama_is_deterministic_and_rejects_bad_output(data):
    a = run_method("scanorama", data, dimred=10, seed=3).embedding
    b = run_method("scanorama", data, dimred=10, seed=3).embedding
    np.testing.assert_array_equal(a, b)
    with pytest.raises(ParamError, match="output"):
        run_method("scanorama", data, output="graph")


# ----------------------------------------------------------------------------- BBKNN
def test_bbknn_graph_mixes_batches(data, unintegrated_ilisi):
    res = run_method("bbknn", data, neighbors_within_batch=8)
    assert res.embedding is None and res.corrected is None
    assert res.connectivities.shape == (data.n_obs, data.n_obs) and sp.issparse(res.distances)
    assert res.extra["n_neighbors"] == 8 * 2
    nn = graph_neighbors(res.distances, k=15)
    # Same neighbour count and weighting on the unintegrated PCA for a fair comparison.
    before = graph_ilisi(knn_of(data.obsm["X_pca"], k=15).indices, data.obs["batch"])
    assert graph_ilisi(nn.indices, data.obs["batch"]) > before + 0.3
    # Each cell has neighbours in both batches by construction.
    batches = data.obs["batch"].to_numpy().astype(str)
    assert (batches[nn.indices] != batches[:, None]).any(axis=1).mean() > 0.95
    assert unintegrated_ilisi < 0.3


def test_bbknn_rejects_too_many_neighbours(data):
    with pytest.raises(ParamError, match="neighbors_within_batch"):
        run_method("bbknn", data, neighbors_within_batch=10_000)


# ----------------------------------------------------------------------------- ComBat
def test_combat_returns_corrected_and_pca_and_mixes(data, unintegrated_ilisi):
    res = run_method("combat", data, n_comps=20)
    assert res.corrected.shape == data.shape and res.embedding.shape == (data.n_obs, 20)
    assert res.corrected.dtype == np.float32
    assert ilisi(knn_of(res.embedding), data.obs["batch"]) > unintegrated_ilisi + 0.2
    # Per-gene batch means are aligned after ComBat (they differ by construction before).
    batch = data.obs["batch"].to_numpy()
    X = data.X.toarray()
    before = np.abs(X[batch == "Batch1"].mean(0) - X[batch == "Batch2"].mean(0)).mean()
    after = np.abs(res.corrected[batch == "Batch1"].mean(0) - res.corrected[batch == "Batch2"].mean(0)).mean()
    assert after < 0.1 * before


def test_combat_rejects_unknown_covariate(data):
    with pytest.raises(ParamError, match="nope"):
        run_method("combat", data, covariates=["nope"])


# ----------------------------------------------------------------------------- scVI / scANVI
def test_scvi_config_presets_and_param_errors(data):
    from methods.scvi_models import CONFIGS, system_covariate

    assert CONFIGS["sysvi"]["model"] == {"n_layers": 2, "n_hidden": 256, "n_latent": 15, "gene_likelihood": "nb"}
    assert CONFIGS["sccraft"]["model"]["n_latent"] == 50
    # One system only: the sysVI set-up falls back to batch as scvi-tools' batch.
    assert system_covariate(data, "batch", "sysvi", None) is False
    with pytest.raises(ParamError, match="use_system"):
        system_covariate(data, "batch", "sysvi", True)
    with pytest.raises(ParamError, match="config"):
        run_method("scvi", data, config="huge")


def test_scvi_trains_mixes_and_is_deterministic(data, unintegrated_ilisi):
    # Short run: no KL warm-up and small minibatches (~700 steps) are enough on 400 cells.
    res = run_method("scvi", data, max_epochs=60, batch_size=32, kl_warmup_epochs=0, seed=1)
    assert res.embedding.shape == (data.n_obs, 10)  # scvi-tools default n_latent
    assert res.epochs == 60 and len(res.loss_history["elbo_train"]) == 60
    # held-out cells scored every epoch: the convergence signal (metrics/convergence.py)
    held_out = res.loss_history["reconstruction_loss_validation"]
    assert len(held_out) == 60 and min(held_out[-10:]) < held_out[0]
    elbo = res.loss_history["elbo_train"]
    assert np.mean(elbo[-3:]) < elbo[0]
    assert ilisi(knn_of(res.embedding), data.obs["batch"]) > unintegrated_ilisi + 0.2
    assert label_agreement(res.embedding, data.obs["label"]) > 0.9
    a = run_method("scvi", data, max_epochs=3, seed=2).embedding
    b = run_method("scvi", data, max_epochs=3, seed=2).embedding
    np.testing.assert_array_equal(a, b)
    c = run_method("scvi", data, max_epochs=3, seed=3).embedding
    assert not np.allclose(a, c)


def test_scvi_sysvi_config_uses_system_as_batch_and_kl_weight(data):
    two_systems = data.copy()
    # Four batches nested in two systems.
    b = np.arange(data.n_obs) % 4
    two_systems.obs["batch"] = pd.Categorical([f"B{i}" for i in b])
    two_systems.obs["system"] = pd.Categorical(np.where(b < 2, "mouse", "human"))
    res = run_method("scvi", two_systems, config="sysvi", max_kl_weight=0.5, max_epochs=2)
    assert res.extra["system_as_batch"] is True
    assert res.embedding.shape == (data.n_obs, 15)


def test_scanvi_with_hidden_labels_predicts_them(data):
    hidden = data.copy()
    labels = hidden.obs["label"].astype(object).to_numpy()
    mask = np.random.default_rng(0).random(hidden.n_obs) < 0.3
    labels[mask] = np.nan
    hidden.obs["label"] = labels
    res = run_method("scanvi", hidden, max_epochs=30, batch_size=32, kl_warmup_epochs=0, scanvi_max_epochs=5)
    assert res.extra["n_unlabeled"] == int(mask.sum())
    assert res.extra["unlabeled_category"] == "Unknown"
    pred = np.asarray(res.predicted_labels)
    assert pred.shape == (data.n_obs,) and "Unknown" not in set(pred)
    truth = data.obs["label"].astype(str).to_numpy()
    assert (pred[mask] == truth[mask]).mean() > 0.8  # hidden cells' types are recovered
    assert any(k.startswith("scanvi_") for k in res.loss_history)


def test_scanvi_labels_avoid_real_unknown_label():
    from methods.scvi_models import scanvi_labels

    out, unlabeled = scanvi_labels(np.array(["Unknown", "T", np.nan], dtype=object))
    assert unlabeled == "Unknown_unlabeled" and list(out) == ["Unknown", "T", "Unknown_unlabeled"]
    with pytest.raises(ValueError, match="every label"):
        scanvi_labels(np.array([np.nan, np.nan], dtype=object))


def test_registry_entries_are_consistent():
    expected = {"scanorama": "embedding", "bbknn": "graph", "combat": "corrected", "scvi": "embedding",
                "scanvi": "embedding", "seurat_rpca": "embedding", "seurat_cca": "embedding"}
    for name, output in expected.items():
        spec = registry.get(name)
        assert spec.output == output, name
    assert registry.get("scanvi").supervised and registry.get("scvi").gpu
    assert registry.get("scvi").input == "counts"
