"""Every scIB metric we report, against scib-metrics 0.5.10 and scib 1.x, on cases built to break it.

Each case is scored the way a study scores it (``metrics.score.score_many`` on small h5ad
files) and compared with the libraries on the same inputs: scib-metrics' own functions (a
dependency), and scib through the small reference functions below, each following the named
file and function of theislab/scib (1.2.x). scib itself is not installed: its kBET needs R and
kBET's R package, its graph LISI a compiled C++ program.

Where we differ from a library on purpose (``metrics/catalog.py``, README "Metrics"), the test
asserts that documented difference instead of equality.
"""

from __future__ import annotations

import json

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scib_metrics as sm
import scipy.sparse as sp
from scib_metrics.nearest_neighbors import NeighborsResults
from scipy.sparse.csgraph import connected_components, dijkstra
from sklearn.metrics import f1_score
from sklearn.neighbors import NearestNeighbors

from cellgraph import umap_connectivities
from metrics.score import score_many

SCIB_METRICS = ["nmi", "ari", "asw_label", "clisi", "isolated_label_asw", "isolated_label_f1", "asw_batch", "bras",
                "ilisi", "kbet", "graph_connectivity", "pcr_comparison"]
OTHER_REFERENCES = {"isolated_label_reference": "scib_metrics", "graph_connectivity_reference": "scib_metrics"}


# ---------------------------------------------------------------- cases

def _cells(spec, dim=10, sep=9.0, batch_shift=0.0, seed=0, far=None):
    """Cells from ``spec`` [(label, batch, n)]: a centre per label, batch b shifted by
    ``batch_shift`` x b's code on axis 0 (the unintegrated PCA by 3 x that); ``far``: a
    (label, batch) pair moved far away on axis 1."""
    rng = np.random.default_rng(seed)
    labels = np.concatenate([[lab] * n for lab, _, n in spec])
    batch = np.concatenate([[b] * n for _, b, n in spec])
    lab_code = np.unique(labels, return_inverse=True)[1]
    bat_code = np.unique(batch, return_inverse=True)[1]
    centres = rng.normal(size=(lab_code.max() + 1, dim)) * sep
    noise = rng.normal(size=(labels.size, dim))
    X = centres[lab_code] + noise
    X_pre = X.copy()
    X[:, 0] += batch_shift * bat_code
    X_pre[:, 0] += 3 * (batch_shift + 1) * bat_code
    if far is not None:
        X[(labels == far[0]) & (batch == far[1]), 1] += 80.0
    return {"X": X.astype(np.float32), "X_pre": X_pre.astype(np.float32), "labels": labels, "batch": batch}


def _grid(labels, batches, n):
    return [(lab, b, n) for lab in labels for b in batches]


def _bbknn_like_graph(X, batch, per_batch=3):
    """A batch-balanced kNN graph (BBKNN's construction: the ``per_batch`` nearest cells of every
    batch, UMAP connectivities of their union), so the graph case needs no extra package."""
    n = X.shape[0]
    idx, dist = [np.arange(n)[:, None]], [np.zeros((n, 1))]
    for b in np.unique(batch):
        members = np.flatnonzero(batch == b)
        d, i = NearestNeighbors(n_neighbors=per_batch + 1).fit(X[members]).kneighbors(X)
        i = members[i]
        first = np.argsort(i == np.arange(n)[:, None], axis=1, kind="stable")[:, :per_batch]  # the cell itself last
        idx.append(np.take_along_axis(i, first, 1))
        dist.append(np.take_along_axis(d, first, 1))
    idx, dist = np.hstack(idx), np.hstack(dist)
    order = np.argsort(dist, axis=1, kind="stable")  # the cell itself (distance 0) stays first
    return umap_connectivities(np.take_along_axis(idx, order, 1), np.take_along_axis(dist, order, 1))


CASES = {  # 360 cells each: JAX compiles the whole-data silhouette and LISI once for all cases
    "perfect_mixing": lambda: _cells(_grid(["T0", "T1", "T2", "T3"], ["B0", "B1", "B2"], 30)),
    "no_mixing": lambda: _cells(_grid(["T0", "T1", "T2", "T3"], ["B0", "B1", "B2"], 30), batch_shift=7.0),
    "batch_specific_types": lambda: _cells(_grid(["T0", "T1"], ["B0", "B1", "B2"], 36)
                                           + _grid(["T2"], ["B0", "B1"], 36) + _grid(["T3"], ["B1", "B2"], 36),
                                           batch_shift=1.0),
    # batch "b" of T0 forms its own small component: the middle code of {a, b, c}
    "disconnected_batch_middle": lambda: _cells([("T0", "a", 120), ("T0", "b", 60), ("T0", "c", 120),
                                                 ("T1", "a", 30), ("T1", "c", 30)], far=("T0", "b")),
    "every_label_every_batch": lambda: _cells(_grid(["T0", "T1", "T2", "T3"], ["B0", "B1"], 45), batch_shift=2.0),
    "one_label_one_batch": lambda: _cells(_grid(["T0", "T1", "T2"], ["B0", "B1"], 55) + [("rare", "B0", 30)],
                                          batch_shift=1.0),
    "unbalanced_batches": lambda: _cells(_grid(["T0", "T1", "T2"], ["B0"], 108) + _grid(["T0", "T1", "T2"], ["B1"], 12),
                                         batch_shift=1.5),
    "graph_only": lambda: _cells(_grid(["T0", "T1", "T2"], ["B0", "B1"], 60), batch_shift=3.0),
}
EMBEDDING_CASES = [c for c in CASES if c != "graph_only"]
# batch ASW and BRAS compute a silhouette per label subset (a JAX compilation per subset size):
# compared where batch mixing differs most
BATCH_ASW_CASES = ["perfect_mixing", "no_mixing", "batch_specific_types", "unbalanced_batches"]


def _write(case: dict, folder) -> tuple:
    folder.mkdir(parents=True, exist_ok=True)
    n = case["labels"].size
    obs = pd.DataFrame({"batch": pd.Categorical(case["batch"]), "label": pd.Categorical(case["labels"])},
                       index=[f"c{i}" for i in range(n)])
    data = ad.AnnData(X=sp.csr_matrix(np.abs(case["X_pre"])), obs=obs)
    data.obsm["X_pca"] = case["X_pre"]
    data.write_h5ad(folder / "data.h5ad")
    run = ad.AnnData(obs=obs.copy())
    if "graph" in case:
        run.obsp["connectivities"] = case["graph"]
        run.obsp["distances"] = case["graph"]
    else:
        run.obsm["X_emb"] = case["X"]
    run.uns["run_json"] = json.dumps({"method": "m", "setting": "s", "seed": 0, "status": "ok"})
    run.write_h5ad(folder / "run.h5ad")
    return folder / "data.h5ad", folder / "run.h5ad"


@pytest.fixture(scope="module")
def scored(tmp_path_factory):
    """{case: (inputs, metrics.json with the default options, its data and run files)}."""
    out = {}
    for name, build in CASES.items():
        case = build()
        if name == "graph_only":
            case["graph"] = _bbknn_like_graph(case["X"], case["batch"])
        data, run = _write(case, tmp_path_factory.mktemp(name))
        names = SCIB_METRICS if name in BATCH_ASW_CASES else [m for m in SCIB_METRICS if m not in ("asw_batch", "bras")]
        default = score_many(data, [run], [data.parent / "default.json"], {"metrics": names})[0]
        assert default["status"] == "ok", default["error"]
        out[name] = (case, default, (data, run))
    return out


@pytest.fixture(scope="module")
def scored_other(scored):
    """{case: metrics.json of the references' options (scib-metrics instead of scib)}."""
    out = {}
    for name, (_, _, (data, run)) in scored.items():
        opts = {"metrics": ["isolated_label_asw", "isolated_label_f1", "graph_connectivity"], **OTHER_REFERENCES}
        out[name] = score_many(data, [run], [data.parent / "other.json"], opts)[0]
        assert out[name]["status"] == "ok", out[name]["error"]
    return out


def _knn(X, k):
    nn = NearestNeighbors(n_neighbors=k, algorithm="brute").fit(X)
    dist, idx = nn.kneighbors(X)
    return NeighborsResults(indices=idx, distances=dist.astype(np.float32))


@pytest.fixture()
def exact_diffusion_search(monkeypatch):
    """scib-metrics' kBET with its pynndescent search on the diffusion map replaced by exact search,
    the one documented difference of our kBET (tests/test_kbet.py compares with pynndescent)."""
    from scib_metrics import nearest_neighbors

    monkeypatch.setattr(nearest_neighbors, "pynndescent", lambda X, n_neighbors: _knn(X, n_neighbors))


def _with_graph(conn) -> NeighborsResults:
    """A NeighborsResults whose connectivities are a given graph (scib-metrics reads only those)."""
    res = NeighborsResults(indices=np.zeros((conn.shape[0], 1), dtype=int), distances=np.zeros((conn.shape[0], 1)))
    res.__dict__["knn_graph_connectivities"] = sp.csr_matrix(conn)  # fills the cached_property
    return res


# ---------------------------------------------------------------- scib, as small reference functions

def scib_isolated_labels(labels, batch) -> list:
    """scib/metrics/isolated_labels.py::get_isolated_labels (iso_threshold=None)."""
    tmp = pd.DataFrame({"label": labels, "batch": batch}).drop_duplicates()
    per_label = tmp.groupby("label").agg({"batch": "count"})
    threshold = per_label.min().tolist()[0]
    if threshold == pd.Series(batch).nunique():
        return []
    return per_label[per_label["batch"] <= threshold].index.tolist()


def scib_isolated_f1(clusterings: list, labels, isolated) -> float:
    """scib/metrics/isolated_labels.py::isolated_labels(cluster=True): per isolated label the best
    F1 of (label vs one cluster) at the resolution maximizing it, averaged over isolated labels."""
    scores = []
    for lab in isolated:
        y_true = labels == lab
        scores.append(max(f1_score(clusters == c, y_true) for clusters in clusterings for c in np.unique(clusters)))
    return float(np.mean(scores))


def scib_graph_connectivity(conn, labels) -> float:
    """scib/metrics/graph_connectivity.py::graph_connectivity on ``adata.obsp["connectivities"]``."""
    res = []
    for lab in np.unique(labels):
        sub = conn[labels == lab][:, labels == lab]
        _, comp = connected_components(sub, connection="strong")
        tab = pd.Series(comp).value_counts()
        res.append(tab.max() / tab.sum())
    return float(np.mean(res))


def scanpy_15nn_pattern(X) -> sp.csr_matrix:
    """The sparsity of scanpy's ``pp.neighbors`` connectivities (15 neighbours incl. the cell; UMAP's
    fuzzy union keeps an edge when either cell lists the other): all components depend on."""
    idx = _knn(X, 15).indices
    n = idx.shape[0]
    g = sp.csr_matrix((np.ones(idx.size), (np.repeat(np.arange(n), 15), idx.ravel())), shape=(n, n))
    g = g.maximum(g.T)
    g.setdiag(0)
    g.eliminate_zeros()
    return g


def scib_diffusion_conn(conn, min_k=50, max_iterations=26):
    """scib/metrics/utils.py::diffusion_conn, step by step (spmatrix products)."""
    T = sp.csr_matrix(conn, dtype=np.float64)
    T = sp.diags(1 / np.array([T.sum(1).max()] * T.shape[0])) * T
    M = T
    n_comp, labs = connected_components(conn, connection="strong")
    if n_comp > 1:
        tab = pd.Series(labs).value_counts()
        large = ~pd.Series(labs).isin(tab.index[tab < min_k]).to_numpy()
    else:
        large = np.ones(M.shape[0], dtype=bool)
    T_agg, i = T, 2
    while (M[large, :][:, large] > 0).sum(1).min() < min_k and i < max_iterations:
        T_agg = T_agg * T
        M = M + T_agg
        i += 1
    M = sp.csr_matrix(M)
    M.setdiag(0)
    M.eliminate_zeros()
    return M


def _scib_hbeta(d, beta):
    """scib/metrics/lisi.py::Hbeta: entropy and neighbour probabilities at precision beta."""
    P = np.exp(-d * beta)
    sumP = P.sum()
    if sumP == 0:
        return 0.0, np.zeros_like(P)
    return np.log(sumP) + beta * np.sum(d * P) / sumP, P / sumP


def scib_graph_lisi(conn, values, k=90) -> np.ndarray:
    """scib graph LISI per cell: scib/knn_graph/knn_graph.cpp (the k nearest cells by shortest
    path, edge length = connectivity) + scib/metrics/lisi.py::compute_simpson_index_graph."""
    D = dijkstra(sp.csr_matrix(conn), directed=True)
    codes = pd.Categorical(values).codes
    n_cat = codes.max() + 1
    perplexity = np.floor(k / 3)
    out = np.full(D.shape[0], np.nan)
    for i, row in enumerate(D):
        row[i] = np.inf
        order = np.argsort(row, kind="stable")[:k]
        if not np.isfinite(row[order[0]]):
            continue  # an isolated cell: no output row in scib
        if not np.isfinite(row[order]).all():
            out[i] = 1.0  # "not enough neighbors": simpson 1
            continue
        d = row[order]
        beta, betamin, betamax = 1.0, -np.inf, np.inf
        H, P = _scib_hbeta(d, beta)
        Hdiff, tries = H - np.log(perplexity), 0
        while abs(Hdiff) > 1e-5 and tries < 50:
            if Hdiff > 0:
                betamin = beta
                beta = beta * 2 if betamax == np.inf else (beta + betamax) / 2
            else:
                betamax = beta
                beta = beta / 2 if betamin == -np.inf else (beta + betamin) / 2
            H, P = _scib_hbeta(d, beta)
            Hdiff, tries = H - np.log(perplexity), tries + 1
        sumP = np.bincount(codes[order], weights=P, minlength=n_cat)
        out[i] = 1 / np.dot(sumP, sumP) if H != 0 else -1.0
    return out


# ---------------------------------------------------------------- embedding outputs vs scib-metrics

@pytest.mark.parametrize("name", EMBEDDING_CASES)
def test_embedding_metrics_match_scib_metrics(scored, name, exact_diffusion_search):
    case, ours, _ = scored[name]
    X, labels, batch = case["X"], case["labels"], case["batch"]
    got = ours["metrics"]
    nbrs = _knn(X, 90)
    ref = sm.nmi_ari_cluster_labels_leiden(nbrs.subset_neighbors(15), labels, optimize_resolution=True)
    assert got["nmi"] == pytest.approx(ref["nmi"], abs=1e-9)
    assert got["ari"] == pytest.approx(ref["ari"], abs=1e-9)
    assert got["asw_label"] == pytest.approx(float(sm.silhouette_label(X, labels)), abs=1e-5)
    assert got["clisi"] == pytest.approx(float(sm.clisi_knn(nbrs, labels)), abs=1e-5)
    assert got["ilisi"] == pytest.approx(float(sm.ilisi_knn(nbrs, batch)), abs=1e-5)
    if name in BATCH_ASW_CASES:  # str arrays: scib-metrics' silhouette_batch is wrong on a pandas Categorical
        assert got["asw_batch"] == pytest.approx(float(sm.silhouette_batch(X, labels, batch)), abs=1e-5)
        assert got["bras"] == pytest.approx(float(sm.bras(X, labels, batch)), abs=1e-5)
    assert got["pcr_comparison"] == pytest.approx(
        float(sm.pcr_comparison(case["X_pre"], X, batch, categorical=True)), abs=1e-5)
    assert got["kbet"] == pytest.approx(float(sm.kbet_per_label(nbrs.subset_neighbors(50), batch, labels)), abs=1e-9)


def test_cases_cover_the_range(scored):
    """The cases are what their names say (so that the comparisons above mean something)."""
    got = {name: scored[name][1]["metrics"] for name in scored}
    assert got["perfect_mixing"]["ilisi"] > 0.8 and got["perfect_mixing"]["kbet"] > 0.8
    assert got["no_mixing"]["ilisi"] < 0.1 and got["no_mixing"]["kbet"] < 0.05
    assert got["no_mixing"]["asw_batch"] < got["perfect_mixing"]["asw_batch"] - 0.1
    assert got["disconnected_batch_middle"]["kbet"] > 0.7  # the far batch is left out, the rest is mixed


# ---------------------------------------------------------------- kBET: codes after removing components

def test_kbet_batch_codes_renumbered_after_small_components_are_removed(scored, exact_diffusion_search):
    """Regression (37c88a7 scored 0.0): the removed component holds all of batch "b", the middle code
    of {a, b, c}; scib-metrics renumbers the remaining batches, so must we. Renaming the batches so
    that the removed one is last must not change the value."""
    from metrics.kbet import kbet_per_label

    case, ours, _ = scored["disconnected_batch_middle"]
    conn = _knn(case["X"], 50).knn_graph_connectivities
    ref = float(sm.kbet_per_label(_knn(case["X"], 50), case["batch"], case["labels"]))
    renamed = np.array([{"a": "a", "b": "z", "c": "c"}[b] for b in case["batch"]])
    assert ref > 0.7
    assert ours["metrics"]["kbet"] == pytest.approx(ref, abs=1e-9)
    assert kbet_per_label(conn, case["batch"], case["labels"]) == kbet_per_label(conn, renamed, case["labels"])


def test_kbet_diffusion_components_per_label_not_carried_over(exact_diffusion_search):
    """Documented difference: scib-metrics 0.5.10 lowers ``diffusion_n_comps`` to n - 1 for a small
    label and keeps that lower number for every later label (it reassigns its argument in the
    loop); we use min(100, n - 1) per label. scib-metrics' value equals ours with the small
    label's component count applied to every label."""
    from metrics.kbet import kbet_per_label

    case = _cells([("A", "B0", 6), ("A", "B1", 6), ("T", "B0", 200), ("T", "B1", 200)], batch_shift=0.8)
    nbrs = _knn(case["X"], 50)
    ref = float(sm.kbet_per_label(nbrs, case["batch"], case["labels"]))
    carried = kbet_per_label(nbrs.knn_graph_connectivities, case["batch"], case["labels"], diffusion_n_comps=11)
    ours = kbet_per_label(nbrs.knn_graph_connectivities, case["batch"], case["labels"])
    assert ref == pytest.approx(carried, abs=1e-9)
    assert abs(ours - carried) > 0.03  # T with 100 diffusion components instead of A's 11


# ---------------------------------------------------------------- isolated labels

@pytest.mark.parametrize("name", EMBEDDING_CASES)
def test_isolated_labels_follow_scib_and_scib_metrics(scored, scored_other, name):
    """Default (scib >= 1.1.6): no isolated label when every label is in every batch; option
    "scib_metrics" (scib-metrics 0.5.10): every label is then isolated. The labels used are recorded."""
    from metrics.scib_set import LEIDEN_RESOLUTIONS, leiden_clusterings

    (case, ours, _), other = scored[name], scored_other[name]
    X, labels, batch = case["X"], case["labels"], case["batch"]
    iso = scib_isolated_labels(labels, batch)
    assert ours["extra"]["isolated_labels"] == iso
    ref_asw = float(sm.isolated_labels(X, labels, batch))
    assert other["metrics"]["isolated_label_asw"] == pytest.approx(ref_asw, abs=1e-5)
    conn15 = _knn(X, 90).subset_neighbors(15).knn_graph_connectivities
    clusterings = list(leiden_clusterings(conn15, LEIDEN_RESOLUTIONS).values())
    if iso:
        assert ours["metrics"]["isolated_label_asw"] == pytest.approx(ref_asw, abs=1e-5)
        assert ours["metrics"]["isolated_label_f1"] == pytest.approx(scib_isolated_f1(clusterings, labels, iso))
        assert other["extra"]["isolated_labels"] == iso  # both references agree when a label is isolated
        assert other["metrics"]["isolated_label_f1"] == ours["metrics"]["isolated_label_f1"]
    else:  # every label in every batch
        for m in ("isolated_label_asw", "isolated_label_f1"):
            assert ours["metrics"][m] is None and "no isolated label" in ours["na_reasons"][m]
        every = sorted(set(labels))
        assert other["extra"]["isolated_labels"] == every
        assert other["metrics"]["isolated_label_f1"] == pytest.approx(scib_isolated_f1(clusterings, labels, every))


def test_isolated_label_cases(scored):
    assert scored["every_label_every_batch"][1]["extra"]["isolated_labels"] == []
    assert scored["perfect_mixing"][1]["extra"]["isolated_labels"] == []
    assert scored["one_label_one_batch"][1]["extra"]["isolated_labels"] == ["rare"]
    assert scored["batch_specific_types"][1]["extra"]["isolated_labels"] == ["T2", "T3"]


# ---------------------------------------------------------------- graph connectivity

@pytest.mark.parametrize("name", EMBEDDING_CASES)
def test_graph_connectivity_follows_scib_by_default(scored, name):
    """Default: scib 1.x, components of scanpy's symmetric 15-NN connectivities (the library the
    scDREAMER and scCRAFT papers scored with)."""
    case, ours, _ = scored[name]
    assert ours["metrics"]["graph_connectivity"] == pytest.approx(
        scib_graph_connectivity(scanpy_15nn_pattern(case["X"]), case["labels"]), abs=1e-12)


@pytest.mark.parametrize("name", EMBEDDING_CASES)
def test_graph_connectivity_scib_metrics_option(scored, scored_other, name):
    """Option: scib-metrics' Benchmarker, strong components of the directed 15-NN graph."""
    case = scored[name][0]
    ref = float(sm.graph_connectivity(_knn(case["X"], 15), case["labels"]))
    assert scored_other[name]["metrics"]["graph_connectivity"] == pytest.approx(ref, abs=1e-12)


def test_graph_connectivity_references_differ_where_documented(scored, scored_other):
    """The directed graph has smaller strong components: scib-metrics' value is never higher and is
    lower on at least one case (the regression: 37c88a7 reported scib-metrics' value by default)."""
    lower = 0
    for name in EMBEDDING_CASES:
        ours, other = scored[name][1], scored_other[name]
        assert other["metrics"]["graph_connectivity"] <= ours["metrics"]["graph_connectivity"] + 1e-12
        lower += other["metrics"]["graph_connectivity"] < ours["metrics"]["graph_connectivity"] - 1e-3
    assert lower >= 1


# ---------------------------------------------------------------- graph-only output (BBKNN-like)

def test_graph_output_follows_scib(scored, exact_diffusion_search):
    """Leiden NMI/ARI and graph connectivity on the method's graph; kBET after scib's diffusion to
    >= 50 neighbours; graph LISI by shortest paths (regression: 37c88a7 ran kBET on the raw graph
    and LISI on diffusion-map neighbours)."""
    case, ours, _ = scored["graph_only"]
    got, conn, labels, batch = ours["metrics"], case["graph"], case["labels"], case["batch"]
    assert ours["output"] == "graph"
    ref = sm.nmi_ari_cluster_labels_leiden(_with_graph(conn), labels, optimize_resolution=True)
    assert got["nmi"] == pytest.approx(ref["nmi"], abs=1e-9) and got["ari"] == pytest.approx(ref["ari"], abs=1e-9)
    assert got["graph_connectivity"] == pytest.approx(scib_graph_connectivity(conn, labels), abs=1e-12)
    dense = scib_diffusion_conn(conn)
    assert np.diff(dense.indptr).min() >= 50
    ref_kbet = float(sm.kbet_per_label(_with_graph(dense), batch, labels))
    raw_kbet = float(sm.kbet_per_label(_with_graph(conn), batch, labels))
    assert got["kbet"] == pytest.approx(ref_kbet, abs=1e-9)
    assert abs(ref_kbet - raw_kbet) > 0.02  # the densification matters on this graph
    ilisi = scib_graph_lisi(conn, batch)
    clisi = scib_graph_lisi(conn, labels)
    assert got["ilisi"] == pytest.approx((np.nanmedian(ilisi) - 1) / (2 - 1), abs=1e-4)
    assert got["clisi"] == pytest.approx((3 - np.nanmedian(clisi)) / (3 - 1), abs=1e-4)
    for m in ("asw_label", "pcr_comparison", "isolated_label_asw"):
        assert got[m] is None and "embedding" in ours["na_reasons"][m]


def test_diffusion_connectivities_equal_scib():
    from metrics.graph_output import diffusion_connectivities

    case = _cells(_grid(["T0", "T1"], ["B0", "B1"], 40), batch_shift=2.0)
    conn = _bbknn_like_graph(case["X"], case["batch"], per_batch=2)
    ours, ref = diffusion_connectivities(conn, min_k=50), scib_diffusion_conn(conn, min_k=50)
    assert ours.nnz == ref.nnz and abs(ours - ref).max() < 1e-12
    with pytest.raises(ValueError, match="could not create diffusion connectivities"):
        diffusion_connectivities(conn, min_k=50, max_iterations=3)


def test_shortest_path_neighbours_equal_dijkstra():
    from metrics.graph_output import graph_lisi_per_cell, shortest_path_neighbors

    case = _cells(_grid(["T0", "T1"], ["B0", "B1"], 40) + [("T2", "B0", 6)], batch_shift=1.0)
    conn = _bbknn_like_graph(case["X"], case["batch"], per_batch=2).tolil()
    conn[:, -3:] = 0  # three cells with no edge: left out, as scib leaves them out
    conn[-3:, :] = 0
    conn = sp.csr_matrix(conn)
    conn.eliminate_zeros()
    idx, dist = shortest_path_neighbors(conn, 90)  # the 83 connected cells reach fewer than 90
    D = dijkstra(conn, directed=True)
    np.fill_diagonal(D, np.inf)
    ref = np.sort(D, axis=1)[:, :90]
    np.testing.assert_allclose(np.where(np.isfinite(ref), ref, -1), np.where(np.isfinite(dist), dist, -1), atol=1e-12)
    assert ((idx >= 0) == np.isfinite(ref)).all()
    lisi = graph_lisi_per_cell(idx, dist, case["batch"])
    ref_lisi = scib_graph_lisi(conn, case["batch"])
    np.testing.assert_allclose(lisi, ref_lisi, atol=1e-4)
    assert np.isnan(lisi[-3:]).all() and (lisi[:-3] == 1).all()
    idx, dist = shortest_path_neighbors(conn, 30)
    np.testing.assert_allclose(graph_lisi_per_cell(idx, dist, case["batch"]), scib_graph_lisi(conn, case["batch"], 30),
                               atol=1e-4)
