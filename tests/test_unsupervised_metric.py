"""Tests for the label-free per-batch cluster conservation metric (metrics/unsupervised.py)."""

from __future__ import annotations

import numpy as np
import pytest

from metrics.unsupervised import knn_connectivities, per_batch_cluster_conservation


def blobs(seed: int = 0, n_per: int = 60, n_types: int = 3, n_genes: int = 40):
    """Two batches with the same three well-separated cell types; batch 2 shifted in every gene."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(0, 6, size=(n_types, n_genes))
    X, batch, label = [], [], []
    for b, shift in enumerate((0.0, 10.0)):
        for t in range(n_types):
            X.append(centers[t] + shift + rng.normal(0, 0.5, size=(n_per, n_genes)))
            batch += [f"b{b}"] * n_per
            label += [t] * n_per
    return np.vstack(X).astype(np.float32), np.array(batch), np.array(label)


def test_structure_kept_scores_high_and_collapsed_scores_low():
    X, batch, label = blobs()
    rng = np.random.default_rng(1)
    # "good" integration: types aligned across batches, batch shift removed
    good = np.eye(3)[label] * 10 + rng.normal(0, 0.3, size=(label.size, 3))
    # "over-corrected": every cell in one blob, within-batch structure lost
    collapsed = rng.normal(0, 1, size=(label.size, 3))
    res_good = per_batch_cluster_conservation(X, good, batch, resolution=0.5, seed=0)
    res_bad = per_batch_cluster_conservation(X, collapsed, batch, resolution=0.5, seed=0)
    assert set(res_good) == {"batch_cluster_nmi", "batch_cluster_ari"}
    assert res_good["batch_cluster_nmi"] > 0.95 and res_good["batch_cluster_ari"] > 0.95
    assert res_bad["batch_cluster_nmi"] < 0.3 and res_bad["batch_cluster_ari"] < 0.2


def test_graph_input_matches_embedding_input_and_is_deterministic():
    X, batch, label = blobs(seed=2)
    emb = np.eye(3)[label] * 10 + np.random.default_rng(3).normal(0, 1.0, size=(label.size, 3))
    via_emb = per_batch_cluster_conservation(X, emb, batch, seed=4)
    via_graph = per_batch_cluster_conservation(X, batch=batch, graph=knn_connectivities(emb, 15, 4), seed=4)
    assert via_emb == via_graph
    assert per_batch_cluster_conservation(X, emb, batch, seed=4) == via_emb


def test_sparse_expression_accepted():
    import scipy.sparse as sp

    X, batch, label = blobs(seed=5)
    X = np.clip(X, 0, None)
    emb = np.eye(3)[label] * 10
    dense = per_batch_cluster_conservation(X, emb, batch)
    sparse = per_batch_cluster_conservation(sp.csr_matrix(X), emb, batch)
    assert dense == pytest.approx(sparse, abs=1e-6)


@pytest.mark.parametrize("kwargs, message", [
    ({"emb": np.zeros((5, 2))}, "emb has shape"),
    ({"emb": None}, "exactly one of emb= or graph="),
    ({"emb": np.full((360, 2), np.nan)}, "NaN"),
])
def test_bad_input_named(kwargs, message):
    X, batch, _ = blobs()
    with pytest.raises(ValueError, match=message):
        per_batch_cluster_conservation(X, batch=batch, **kwargs)


def test_single_batch_rejected():
    X, _, label = blobs()
    with pytest.raises(ValueError, match="at least 2 batches"):
        per_batch_cluster_conservation(X, np.eye(3)[label], np.zeros(label.size))
