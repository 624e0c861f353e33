"""kBET and the UMAP connectivities written here agree with scib-metrics / UMAP on the same inputs."""

import numpy as np
import pytest
from scib_metrics.nearest_neighbors import NeighborsResults

from cellgraph import umap_connectivities
from metrics.kbet import kbet_acceptance, kbet_per_label
from metrics.neighbors import exact_knn


def _data(shift, n=800, seed=0):
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(4), n // 4)
    batch = rng.integers(0, 3, n)
    X = rng.normal(size=(n, 8)) + labels[:, None] * 6 + batch[:, None] * shift
    return X.astype(np.float32), batch, labels


def test_connectivities_match_umap():
    X, _, _ = _data(0.0)
    X[3] = X[4]  # a duplicated point (zero distance to a non-self neighbour)
    for k in (15, 50):
        r = exact_knn(X, k)
        ref = NeighborsResults(indices=r.indices, distances=r.distances).knn_graph_connectivities.tocsr()
        ours = umap_connectivities(r.indices, r.distances)
        assert ours.nnz == ref.nnz
        assert abs(ours - ref).max() < 1e-5


def test_kbet_acceptance_known_values():
    # every neighbourhood holds both batches in the global 50/50 mix -> all accepted
    batches = np.tile([0, 1], 50)
    mixed = np.stack([np.roll(np.arange(100), -i)[:10] for i in range(100)])
    assert kbet_acceptance(mixed, batches) == 1.0
    # neighbourhoods drawn from one batch only -> all rejected
    same = np.array([np.flatnonzero(batches == batches[i])[:10] for i in range(100)])
    assert kbet_acceptance(same, batches) == 0.0


@pytest.mark.parametrize("shift", [0.0, 0.6, 3.0])
def test_kbet_per_label_matches_scib_metrics(shift):
    from scib_metrics import kbet_per_label as reference

    X, batch, labels = _data(shift)
    r = exact_knn(X, 50)
    ours = kbet_per_label(r.knn_graph_connectivities, batch, labels)
    ref = float(reference(NeighborsResults(indices=r.indices, distances=r.distances), batch, labels))
    assert ours == pytest.approx(ref, abs=0.02)  # neighbour ties may differ (exact vs approximate kNN)
    if shift == 0.0:
        assert ours > 0.8
    if shift == 3.0:
        assert ours < 0.1


def test_kbet_query_subsample_close_to_exact():
    """Above max_query_cells a seeded subsample of neighbourhoods is tested: nearly the same value."""
    X, batch, labels = _data(0.2, n=1600)  # about 80 % accepted
    conn = exact_knn(X, 50)
    conn = umap_connectivities(conn.indices, conn.distances)
    exact = kbet_per_label(conn, batch, labels)
    sub = kbet_per_label(conn, batch, labels, max_query_cells=150, seed=0)
    assert kbet_per_label(conn, batch, labels, max_query_cells=150, seed=0) == sub
    assert sub != exact and abs(sub - exact) < 0.05
    assert kbet_per_label(conn, batch, labels, max_query_cells=400) == exact  # every label has 400 cells
