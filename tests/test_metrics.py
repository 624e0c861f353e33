"""Metric functions on hand-built examples with known values, and agreement with scib-metrics."""

from __future__ import annotations

import numpy as np
import pytest

from metrics import moransi as mi
from metrics import paper_metrics as pm
from metrics.catalog import ALL_METRICS, METRIC_SETS, metric_info


def blobs(n_per=60, n_types=3, n_batches=2, dim=8, sep=20.0, batch_shift=0.0, seed=0):
    """Well separated cell-type blobs; batches interleaved (shift 0) or pushed apart."""
    rng = np.random.default_rng(seed)
    labels = np.repeat([f"T{i}" for i in range(n_types)], n_per * n_batches)
    batch = np.tile(np.repeat([f"B{j}" for j in range(n_batches)], n_per), n_types)
    centers = rng.normal(size=(n_types, dim)) * sep
    lab_i = np.unique(labels, return_inverse=True)[1]
    b_i = np.unique(batch, return_inverse=True)[1]
    X = centers[lab_i] + rng.normal(size=(labels.size, dim))
    X[:, 0] += batch_shift * b_i
    return X.astype(np.float32), labels, batch


def test_catalog_is_consistent():
    info = metric_info()
    assert set(info) == set(ALL_METRICS)
    for name, meta in info.items():
        assert meta["type"] in ("bio", "batch", "other"), name
        assert meta["needs"] in ("embedding", "graph", "labels"), name
    for set_name, sets in METRIC_SETS.items():
        for kind in ("bio", "batch"):
            assert set(sets[kind]) <= set(info), set_name
    assert METRIC_SETS["sysvi"] == {"bio": ["nmi_fixed", "moransi"], "batch": ["ilisi"]}


def test_readme_metrics_table_matches_catalog():
    """Each README "Metrics" table row names its metrics and repeats the catalog's reference and differences."""
    import re
    from pathlib import Path

    info = metric_info()
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    section = readme.split("\n## Metrics\n")[1].split("\n## ")[0]
    rows = [ln for ln in section.splitlines() if ln.startswith("| `")]
    covered = set()
    for row in rows:
        names_cell, reference, differences = (c.strip() for c in row.strip("|").split(" | "))
        for name in re.findall(r"`([a-z0-9_]+)`", names_cell):
            assert (reference, differences) == (info[name]["reference"], info[name]["differences"]), name
            covered.add(name)
    assert covered == set(ALL_METRICS)


def test_isolated_label_f1_known_values():
    labels = np.array(["iso"] * 10 + ["a"] * 10 + ["b"] * 20)
    perfect = np.array([0] * 10 + [1] * 10 + [2] * 20)
    merged = np.array([0] * 20 + [1] * 20)  # iso shares its cluster with 10 cells of "a"
    assert pm.isolated_label_f1({1.0: perfect}, labels, ["iso"]) == pytest.approx(1.0)
    assert pm.isolated_label_f1({1.0: merged}, labels, ["iso"]) == pytest.approx(2 * 10 / (20 + 10))
    # the best resolution wins
    assert pm.isolated_label_f1({0.5: merged, 1.0: perfect}, labels, ["iso"]) == pytest.approx(1.0)
    assert np.isnan(pm.isolated_label_f1({1.0: perfect}, labels, []))


def test_nmi_fixed_and_jaccard():
    labels = np.array(["a"] * 30 + ["b"] * 30 + ["c"] * 10)
    # over-clustering (r=2 style) is fine: clusters are relabelled by majority
    split = np.array([0] * 15 + [1] * 15 + [2] * 30 + [3] * 10)
    nmi, jac = pm.nmi_fixed_and_jaccard(split, labels)
    assert nmi == pytest.approx(1.0) and jac == {"a": 1.0, "b": 1.0, "c": 1.0}
    merged = np.array([0] * 30 + [1] * 40)  # c merged into b's cluster
    nmi, jac = pm.nmi_fixed_and_jaccard(merged, labels)
    assert jac["c"] == 0.0 and jac["b"] == pytest.approx(30 / 40) and nmi < 1.0


def _knn_indices(X, k):
    from metrics.neighbors import exact_knn

    return exact_knn(X, k + 1).indices


def test_positive_and_true_positive_rates():
    X, labels, batch = blobs()
    pos, tp = pm.positive_true_positive(pm.knn_adjacency(_knn_indices(X, 20)), labels, batch)
    assert pos.all() and tp.mean() > 0.9  # types separated, batches interleaved
    Xs, labels, batch = blobs(batch_shift=8.0)
    pos, tp = pm.positive_true_positive(pm.knn_adjacency(_knn_indices(Xs, 20)), labels, batch)
    assert pos.all() and tp.mean() == 0.0  # each neighbourhood is one batch
    rng = np.random.default_rng(1)
    shuffled = rng.permutation(labels)
    pos, tp = pm.positive_true_positive(pm.knn_adjacency(_knn_indices(X, 20)), shuffled, batch)
    assert pos.mean() < 0.05 and (tp <= pos).all()


def test_f1_lisi_and_one_minus_ari_batch():
    assert pm.f1_lisi(1.0, 1.0) == pytest.approx(1.0)
    assert pm.f1_lisi(0.5, 1.0) == pytest.approx(2 / 3)
    assert pm.f1_lisi(0.0, 1.0) == 0.0
    batch = np.array(["x"] * 50 + ["y"] * 50)
    assert pm.one_minus_ari_batch(np.array([0] * 50 + [1] * 50), batch) == pytest.approx(0.0)
    mixed = np.tile([0, 1], 50)  # every cluster half x, half y
    assert pm.one_minus_ari_batch(mixed, batch) == pytest.approx(1.0, abs=0.02)


def test_kbet_acceptance_over_sizes():
    X, labels, batch = blobs(n_per=80)
    mixed = pm.kbet_acceptance_over_sizes(X, labels, batch, max_test_cells=60, seed=0)
    assert set(mixed) == {0.05, 0.10, 0.15, 0.20, 0.25}
    assert min(mixed.values()) > 0.8
    Xs, labels, batch = blobs(n_per=80, batch_shift=10.0)
    separated = pm.kbet_acceptance_over_sizes(Xs, labels, batch, max_test_cells=60, seed=0)
    assert max(separated.values()) == 0.0
    again = pm.kbet_acceptance_over_sizes(X, labels, batch, max_test_cells=60, seed=0)
    assert again == mixed  # seeded


def test_kbet_acceptance_over_sizes_memory_is_bounded():
    """Regression (37c88a7 held tested cells x k x batches one-hot counts and their cumsum, ~3 GB per
    block for the heart atlas): with many batches the peak stays near the distance block."""
    import tracemalloc

    rng = np.random.default_rng(0)
    n, n_batches = 4000, 100
    X = rng.normal(size=(n, 5)).astype(np.float32)
    labels, batch = np.zeros(n, dtype=int), rng.integers(0, n_batches, n)
    tracemalloc.start()
    res = pm.kbet_acceptance_over_sizes(X, labels, batch, max_test_cells=64, seed=0)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 12e6, peak  # 37c88a7: 64 x 1000 x 100 int32 one-hot + int64 cumsum ~ 77 MB
    assert min(res.values()) > 0.6  # random batches: mostly accepted


def test_moransi_large_groups_use_approximate_knn(monkeypatch):
    """Regression (37c88a7 ran brute-force kNN per group, quadratic in its size): above
    exact_max_cells a group's kNN is approximate, is flagged, and gives nearly the exact value."""
    from metrics import neighbors

    rng = np.random.default_rng(0)
    n = 600
    t = rng.uniform(0, 1, n)
    genes = np.column_stack([np.sin(3 * t + p) for p in np.linspace(0, 2, 12)]) + 0.05 * rng.normal(size=(n, 12))
    X = (genes - genes.min() + 0.1).astype(np.float32)
    batch, labels = np.array(["s1"] * n), np.array(["beta"] * n)
    emb = np.column_stack([t, 0.01 * rng.normal(size=n)])
    exact = mi.moransi_preservation(mi.moransi_reference(X, batch, labels, min_cells=100), X, emb)
    brute_sizes = []
    real_exact_knn = neighbors.exact_knn
    monkeypatch.setattr(neighbors, "exact_knn", lambda X, k, **kw: brute_sizes.append(len(X)) or real_exact_knn(X, k, **kw))
    ref = mi.moransi_reference(X, batch, labels, min_cells=100, exact_max_cells=300)
    approx = mi.moransi_preservation(ref, X, emb, exact_max_cells=300)
    assert brute_sizes == [] and ref[0]["approx_knn"]
    assert approx == pytest.approx(exact, abs=0.02)


def test_isolated_labels_when_every_label_is_in_every_batch():
    """Regression (37c88a7 followed scib-metrics: every label counted as isolated): scib finds none."""
    from metrics.scib_set import isolated_labels_list

    labels = np.array(["a", "a", "b", "b", "c"])
    assert isolated_labels_list(labels, np.array(["x", "y", "x", "y", "x"])) == ["c"]
    shared = np.array(["x", "y", "x", "y", "y"])
    labels[-1] = "b"
    assert isolated_labels_list(labels, shared) == []
    assert isolated_labels_list(labels, shared, reference="scib_metrics") == ["a", "b"]


def test_macro_f1_on_hidden_cells():
    truth = np.array(["a", "a", "b", "b", "c", "c"])
    hidden = np.array([True, True, True, True, False, False])
    assert pm.macro_f1(truth, truth, hidden) == 1.0
    pred = np.array(["a", "b", "b", "b", "x", "x"])  # a: P=1 R=.5 -> 2/3; b: P=2/3 R=1 -> .8
    assert pm.macro_f1(truth, pred, hidden) == pytest.approx((2 / 3 + 0.8) / 2)


def test_moransi_preservation_smooth_vs_random():
    rng = np.random.default_rng(0)
    n = 240
    t = rng.uniform(0, 1, n)  # a within-cell-type gradient the genes follow
    genes = np.column_stack([np.sin(3 * t + p) for p in np.linspace(0, 2, 12)]) + 0.05 * rng.normal(size=(n, 12))
    X = (genes - genes.min() + 0.1).astype(np.float32)
    batch = np.array(["s1"] * n)
    labels = np.array(["beta"] * n)
    ref = mi.moransi_reference(X, batch, labels, min_cells=100, cutoff=0.2)
    assert len(ref) == 1 and ref[0]["genes"].size > 5
    good = mi.moransi_preservation(ref, X, np.column_stack([t, 0.01 * rng.normal(size=n)]))
    bad = mi.moransi_preservation(ref, X, rng.normal(size=(n, 5)))
    assert good > 0.7 and bad < 0.2
    assert mi.moransi_reference(X, batch, labels, min_cells=1000) == []
    doublets = mi.moransi_reference(X, batch, np.array(["beta+alpha"] * n), min_cells=100)
    assert doublets == []


def test_exact_knn_matches_numpy():
    from metrics.neighbors import exact_knn, knn

    X, _, _ = blobs(n_per=20)
    res = exact_knn(X, 10)
    d = ((X[:, None, :] - X[None, :, :]) ** 2).sum(-1)
    ref = np.sort(d, axis=1)[:, :10]
    assert (res.indices[:, 0] == np.arange(X.shape[0])).all()
    np.testing.assert_allclose(res.distances ** 2, ref, rtol=1e-3, atol=1e-3)
    with pytest.raises(ValueError, match="knn_method"):
        knn(X, 10, method="faiss")


def test_leiden_in_worker_processes_gives_the_one_process_labels():
    """n_jobs > 1 splits the resolutions over processes that rebuild the graph from files: the
    labels must be those of one process at every resolution (each resolution reseeds its RNG)."""
    from metrics import scib_set as ss
    from metrics.neighbors import exact_knn

    X, _, _ = blobs(n_per=60, batch_shift=1.0, sep=3.0)
    conn = exact_knn(X, 15).knn_graph_connectivities
    one = ss.leiden_clusterings(conn)
    two = ss.leiden_clusterings(conn, n_jobs=3)
    assert list(two) == list(one) == [float(r) for r in ss.LEIDEN_RESOLUTIONS]
    assert len({len(np.unique(c)) for c in one.values()}) > 2  # the resolutions differ, so order matters
    for r in one:
        np.testing.assert_array_equal(two[r], one[r])


def test_scib_set_agrees_with_scib_metrics():
    """Our shared-work versions give scib-metrics' own values on the same inputs."""
    import scib_metrics as sm

    from metrics import scib_set as ss
    from metrics.neighbors import exact_knn

    X, labels, batch = blobs(n_per=50, batch_shift=3.0, sep=6.0)
    labels = labels.astype(object)
    labels[:20] = "rare"
    labels = labels.astype(str)
    batch = batch.copy()
    batch[:20] = "B0"  # "rare" only in one batch: an isolated label
    nbrs = exact_knn(X, 90)
    n15 = nbrs.subset_neighbors(15)
    ours = ss.nmi_ari_optimized(ss.leiden_clusterings(n15.knn_graph_connectivities), labels)
    theirs = sm.nmi_ari_cluster_labels_leiden(n15, labels, optimize_resolution=True)
    assert ours["nmi"] == pytest.approx(theirs["nmi"], abs=1e-9)
    assert ours["ari"] == pytest.approx(theirs["ari"], abs=1e-9)
    sil = ss.label_silhouette(X, labels)
    assert ss.asw_label_from_silhouette(sil) == pytest.approx(float(sm.silhouette_label(X, labels)), abs=1e-5)
    iso = ss.isolated_labels_list(labels, batch)
    assert iso == ["rare"]
    assert ss.isolated_label_asw_from_silhouette(sil, labels, iso) == pytest.approx(
        float(sm.isolated_labels(X, labels, batch)), abs=1e-5)
    ilisi = ss.ilisi_from_per_cell(ss.lisi_per_cell(nbrs, batch), 2)
    clisi = ss.clisi_from_per_cell(ss.lisi_per_cell(nbrs, labels), np.unique(labels).size)
    assert ilisi == pytest.approx(float(sm.ilisi_knn(nbrs, batch)), abs=1e-6)
    assert clisi == pytest.approx(float(sm.clisi_knn(nbrs, labels)), abs=1e-6)


def test_stratified_subsample_keeps_groups():
    from metrics.scib_set import stratified_subsample

    _, labels, batch = blobs(n_per=100)
    idx = stratified_subsample(labels, batch, 120, seed=0)
    assert 100 <= idx.size <= 140 and np.all(np.diff(idx) > 0)
    assert {(a, b) for a, b in zip(labels[idx], batch[idx])} == set(zip(labels, batch))
    np.testing.assert_array_equal(idx, stratified_subsample(labels, batch, 120, seed=0))
    assert stratified_subsample(labels, batch, None, 0).size == labels.size
