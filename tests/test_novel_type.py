"""Held-out novel cell type (methods/novel.py, metrics/novel_type.py).

The held-out type never enters training: a run holding out type T on the whole dataset gives the
seen cells exactly the embedding (and, supervised, the predictions) of a run on the dataset
without T's cells, at the same seed. Any use of T's cells in training (a minibatch, a cluster or
triplet step, a label class, the input scale or library prior) would change the trained network.
"""

from __future__ import annotations

import numpy as np
import pytest

from methods import registry
from methods.base import ParamError

NOVEL = "Group2"
FAST = {
    "sysvi": {"max_epochs": 3, "n_hidden": 32, "n_latent": 4},
    "sccraft": {"max_epochs": 2, "n_latent": 16, "pca_dims": 0, "latent": "mean", "cells_per_batch": 64,
                "minibatch_size": 128, "d_steps": 1, "warmup_epochs": 1},
    "scdreamer": {"epochs": 2, "n_hidden": 32, "batch_size": 64, "embedding": "mean"},
    "scdreamer_sup": {"epochs": 2, "n_hidden": 32, "batch_size": 64, "embedding": "mean"},
    "davae": {"epochs": 2},
    "scvi": {"max_epochs": 2},
    "scanvi": {"max_epochs": 2, "scanvi_max_epochs": 1},
}


def integrate(name, adata, **params):
    module = registry.load_module(name)
    merged = registry.merge_params(name, {**FAST[name], **params})
    return module.integrate(adata, batch_key="batch", label_key="label", params=merged, seed=0, device="cpu")


@pytest.mark.parametrize("name", list(FAST))
def test_held_out_type_never_enters_training(sim_small, name):
    data = sim_small.copy()
    seen = (data.obs["label"].astype(str) != NOVEL).to_numpy()
    held = integrate(name, data, novel_label=NOVEL)
    without = integrate(name, data[seen].copy())
    assert held.embedding.shape[0] == data.n_obs and np.isfinite(held.embedding).all()
    np.testing.assert_allclose(held.embedding[seen], without.embedding, rtol=1e-4, atol=1e-5)
    assert held.extra["novel"] == {"label": NOVEL, "n_novel": int((~seen).sum()), "n_seen": int(seen.sum()),
                                   "finetune_epochs": 0}
    if held.predicted_labels is not None:  # supervised: the label is no class of the model
        assert NOVEL not in set(held.predicted_labels)
        np.testing.assert_array_equal(held.predicted_labels[seen], without.predicted_labels)


@pytest.mark.parametrize("name", ["sysvi", "davae"])
def test_finetune_continues_the_same_first_phase(sim_small, name):
    """finetune k: the first phase is the finetune-0 run; the k epochs on every cell follow it."""
    data = sim_small.copy()
    before = integrate(name, data, novel_label=NOVEL)
    after = integrate(name, data, novel_label=NOVEL, novel_finetune_epochs=2)
    assert after.epochs == before.epochs + 2
    term = "reconstruction"
    assert after.loss_history[term][:before.epochs] == before.loss_history[term]
    assert not np.allclose(after.embedding, before.embedding)


@pytest.mark.parametrize("name", ["harmony", "scanorama", "bbknn", "combat", "seurat_cca", "unintegrated"])
def test_methods_without_a_trained_network_refuse_a_novel_type(name):
    with pytest.raises(ParamError, match="cannot hold out a novel cell type"):
        registry.merge_params(name, {"novel_label": NOVEL})


def test_bad_novel_parameters_are_named(sim_small):
    with pytest.raises(ParamError, match="not a label of this dataset"):
        integrate("davae", sim_small.copy(), novel_label="NoSuchType")
    with pytest.raises(ParamError, match="needs a novel_label"):
        integrate("davae", sim_small.copy(), novel_finetune_epochs=3)


def constructed(novel_apart: bool, seed=0):
    """Three seen types (blobs) and a novel type of 60 cells: a blob of its own far from them, or
    drawn inside seen type A's blob; two batches mixed within every type."""
    rng = np.random.default_rng(seed)
    centres = {"A": [0, 0], "B": [20, 0], "C": [0, 20], "N": [20, 20] if novel_apart else [0, 0]}
    sizes = {"A": 150, "B": 150, "C": 150, "N": 60}
    labels = np.concatenate([[t] * n for t, n in sizes.items()])
    emb = np.concatenate([rng.normal(centres[t], 1.0, (n, 2)) for t, n in sizes.items()])
    batches = rng.choice(["b1", "b2"], labels.size)
    return emb, labels, batches


def test_novel_scores_a_separate_cluster_near_one_and_a_merged_type_low():
    from metrics.novel_type import score

    apart = score(*constructed(True), "N", predicted=np.array(["A"] * 510))
    merged = score(*constructed(False), "N")
    assert apart["f1_own_cluster"] > 0.95 and apart["ari_own_cluster"] > 0.95
    assert apart["separation"] > 5 and apart["nearest_type"] in {"B", "C"}
    assert merged["f1_own_cluster"] < 0.6 and merged["separation"] < 0.5 and merged["nearest_type"] == "A"
    assert apart["ilisi_novel"] > 0.8  # batches drawn at random within the novel type: well mixed
    assert apart["called_known"] == 1.0 and apart["top_called_label"] == "A" and apart["top_called_share"] == 1.0
    assert "called_known" not in merged


def test_novel_ilisi_low_when_the_type_is_split_by_batch():
    from metrics.novel_type import novel_ilisi

    lisi = np.array([1.0] * 10 + [2.0] * 10)
    assert novel_ilisi(lisi, np.arange(20) < 10, 2) == 0.0
    assert novel_ilisi(lisi, np.arange(20) >= 10, 2) == 1.0
