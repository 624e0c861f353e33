"""scDREAMER and scDREAMER-Sup: transforms, consistency variants, losses, determinism, mixing,
label prediction with hidden labels, ablation switches and the run-file path."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import torch

from methods import registry, scdreamer, scdreamer_module, scdreamer_sup
from methods.base import ParamError
from methods.nn.training import LossHistory, seed_all
from methods.runner import hide_labels

torch.set_num_threads(1)

# small networks keep the purely mechanical tests fast; behaviour tests use the defaults
FAST = {"n_hidden": 64}


def tiny_counts_adata(n_cells: int = 384, n_genes: int = 120, n_batches: int = 3, n_types: int = 3,
                      seed: int = 0) -> ad.AnnData:
    """Negative-binomial counts with cell-type marker genes and a multiplicative batch effect."""
    rng = np.random.default_rng(seed)
    types = rng.integers(0, n_types, n_cells)
    batches = np.arange(n_cells) % n_batches
    log_mu = rng.normal(0, 1, n_genes)[None, :] + rng.normal(0, 1.0, (n_batches, n_genes))[batches]
    markers = np.zeros((n_types, n_genes))
    for t in range(n_types):
        markers[t, rng.choice(n_genes, n_genes // 6, replace=False)] = 2.5
    mu = np.exp(log_mu + markers[types])
    mu = mu / mu.sum(1, keepdims=True) * rng.lognormal(np.log(3000), 0.3, n_cells)[:, None]
    counts = rng.poisson(rng.gamma(4.0, mu / 4.0)).astype(np.float32)
    adata = ad.AnnData(X=np.log1p(counts / counts.sum(1, keepdims=True) * 1e4).astype(np.float32))
    adata.layers["counts"] = sp.csr_matrix(counts)
    adata.obs["batch"] = pd.Categorical([f"B{b}" for b in batches])
    adata.obs["label"] = pd.Categorical([f"T{t}" for t in types])
    return adata


def params(method: str = "scdreamer", **over) -> dict:
    return registry.merge_params(method, over)


def run(adata, method="scdreamer", seed=0, label_key=None, **over):
    module = scdreamer_sup if method == "scdreamer_sup" else scdreamer
    return module.integrate(adata, batch_key="batch", label_key=label_key or "label",
                            params=params(method, **over), seed=seed, device="cpu")


def trainer_for(adata, **over):
    """A DreamerTrainer on ``adata`` built the way fit_dreamer builds it (for step-level tests)."""
    cfg = scdreamer.parse_params(params(**over), "scdreamer", False)
    gen = seed_all(0)
    data, batches, _ = scdreamer.prepare_data(adata, cfg, "batch", None, torch.device("cpu"), "scdreamer")
    net = scdreamer_module.DreamerNet(data.x.shape[1], len(batches), z_dim=cfg.z_dim, n_hidden=cfg.n_hidden,
                               dropout=cfg.dropout, use_discriminator=cfg.use_discriminator,
                               use_batch_classifier=cfg.use_batch_classifier)
    scdreamer_module.glorot_init(net, cfg.bias_init)
    return scdreamer.DreamerTrainer(net, data, cfg, gen)


def ilisi(embedding: np.ndarray, batches) -> float:
    """Graph iLISI (scib-metrics, scaled to [0, 1]) on a 30-NN graph of the embedding."""
    from scib_metrics import ilisi_knn
    from scib_metrics.nearest_neighbors import NeighborsResults
    from sklearn.neighbors import NearestNeighbors

    dist, idx = NearestNeighbors(n_neighbors=30).fit(embedding).kneighbors(embedding)
    return float(ilisi_knn(NeighborsResults(indices=idx, distances=dist), np.asarray(batches)))


@pytest.fixture(scope="module")
def tiny():
    return tiny_counts_adata()


# ----------------------------------------------------------------------------- pure functions
def test_double_log_transform_matches_definition_sparse_and_dense():
    counts = np.array([[0, 1, 3], [2, 0, 0], [0, 0, 0]], dtype=np.float32)
    lib = counts.sum(1, keepdims=True)
    expected = np.log2(np.log1p(np.divide(counts * 1e4, lib, out=np.zeros_like(counts), where=lib > 0)) + 1)
    np.testing.assert_allclose(scdreamer_module.double_log_transform(counts), expected, rtol=1e-6)
    np.testing.assert_allclose(scdreamer_module.double_log_transform(sp.csr_matrix(counts)).toarray(), expected,
                               rtol=1e-6)
    t = scdreamer_module.torch_double_log_transform(torch.tensor(counts), float(expected.max()))
    np.testing.assert_allclose(t.numpy(), expected / expected.max(), rtol=1e-5)


def test_prepared_input_is_scaled_to_unit_max(tiny):
    cfg = scdreamer.parse_params(params(), "scdreamer", False)
    data, batches, _ = scdreamer.prepare_data(tiny, cfg, "batch", None, torch.device("cpu"), "scdreamer")
    assert batches == ["B0", "B1", "B2"]
    assert float(data.x.max()) == pytest.approx(1.0) and float(data.x.min()) == 0.0
    assert data.target is data.x and data.counts is None  # code default: ZINB on the scaled input
    cfg_counts = scdreamer.parse_params(params(likelihood_input="counts"), "scdreamer", False)
    data_c, _, _ = scdreamer.prepare_data(tiny, cfg_counts, "batch", None, torch.device("cpu"), "scdreamer")
    np.testing.assert_array_equal(data_c.target.numpy(), tiny.layers["counts"].toarray())


def test_zero_genes_10pct_zeroes_exactly_ten_percent_of_genes_per_draw():
    x = torch.rand(16, 250) + 0.1
    gen = torch.Generator().manual_seed(0)
    out1 = scdreamer_module.perturb_input(x, "zero_genes_10pct", gen)
    zero_cols = (out1 == 0).all(dim=0)
    assert int(zero_cols.sum()) == 25  # int(0.1 * 250), the same genes for every cell
    assert not (out1[:, ~zero_cols] == 0).any()
    torch.testing.assert_close(out1[:, ~zero_cols], x[:, ~zero_cols])
    out2 = scdreamer_module.perturb_input(x, "zero_genes_10pct", gen)
    assert not torch.equal((out2 == 0).all(dim=0), zero_cols)  # a new gene subset per minibatch
    assert (x > 0).all()  # the input itself is not modified


def test_zero_first_100_zeroes_the_first_100_genes_only():
    x = torch.rand(8, 250) + 0.1
    out = scdreamer_module.perturb_input(x, "zero_first_100", torch.Generator().manual_seed(0))
    assert (out[:, :100] == 0).all()
    torch.testing.assert_close(out[:, 100:], x[:, 100:])


def test_keep_80pct_umis_thins_counts_to_about_80_percent():
    torch.manual_seed(0)
    counts = torch.poisson(torch.full((64, 300), 20.0))
    thinned = scdreamer_module.thin_umis(counts, 0.8)
    assert (thinned <= counts).all() and (thinned == thinned.round()).all()
    assert float(thinned.sum() / counts.sum()) == pytest.approx(0.8, abs=0.005)
    # the perturbed encoder input is the same transform applied to the thinned counts
    torch.manual_seed(1)
    out = scdreamer_module.perturb_input(torch.zeros(64, 300), "keep_80pct_umis", torch.Generator(), counts, 3.0)
    torch.manual_seed(1)
    expected = scdreamer_module.torch_double_log_transform(scdreamer_module.thin_umis(counts, 0.8), 3.0)
    torch.testing.assert_close(out, expected)


def test_consistency_off_adds_no_term(tiny):
    assert scdreamer_module.perturb_input(torch.ones(4, 10), "off", torch.Generator()) is None
    off = run(tiny, epochs=1, consistency="off", **FAST).loss_history
    on = run(tiny, epochs=1, **FAST).loss_history
    assert "consistency" not in off
    assert on["consistency"][0] > 0


def test_bhattacharyya_coefficient_is_one_for_identical_scores_and_smaller_otherwise():
    r = torch.tensor([1.0, 2.0, 3.0, 4.0])
    assert float(scdreamer_module.bhattacharyya_coefficient(r, r)) == pytest.approx(1.0)
    assert float(scdreamer_module.bhattacharyya_coefficient(r, torch.tensor([4.0, 3.0, 2.0, 1.0]))) < 0.95


def test_clipped_kl_is_zero_at_the_prior_and_positive_elsewhere():
    zeros, ones = torch.zeros(3, 4), torch.ones(3, 4)
    torch.testing.assert_close(scdreamer_module.kl_standard_clipped(zeros, ones), torch.zeros(3))
    assert (scdreamer_module.kl_normal_clipped(ones, ones * 0.5, zeros, ones) > 0).all()


def test_labels_with_nan_get_code_minus_one():
    codes, cats = scdreamer.label_codes_with_missing(np.array(["b", np.nan, "a", "b", None], dtype=object))
    assert cats == ["a", "b"]
    assert codes.tolist() == [1, -1, 0, 1, -1]


# ----------------------------------------------------------------------------- training
def test_losses_go_down_and_stay_finite_for_50_epochs(tiny):
    hist = run(tiny, epochs=50, **FAST).loss_history
    for term, values in hist.items():
        assert len(values) == 50 and np.isfinite(values).all(), term
    for term in ("recon", "kl_l", "loss_ae"):
        assert np.mean(hist[term][-5:]) < 0.8 * hist[term][0], term


def test_holdout_cells_are_embedded_and_their_reconstruction_recorded(tiny):
    """holdout: the held-out cells' reconstruction is recorded per epoch and falls as the model
    learns; training uses the other cells only; every cell is still embedded."""
    res = run(tiny, epochs=60, holdout=0.25, **FAST)
    hist = res.loss_history
    assert res.embedding.shape[0] == tiny.n_obs and np.isfinite(res.embedding).all()
    assert res.extra["n_train"] == tiny.n_obs - round(0.25 * tiny.n_obs)
    held = np.asarray(hist["reconstruction_validation"])
    assert held.size == 60 and np.isfinite(held).all()
    assert np.mean(held[-5:]) < 0.95 * held[0]
    assert "reconstruction_validation" not in run(tiny, epochs=2, **FAST).loss_history
    with pytest.raises(ParamError, match="holdout"):
        run(tiny, epochs=2, holdout=0.6, **FAST)


def test_same_seed_same_embedding_on_cpu(tiny):
    a = run(tiny, epochs=2, seed=3, **FAST)
    b = run(tiny, epochs=2, seed=3, **FAST)
    c = run(tiny, epochs=2, seed=4, **FAST)
    np.testing.assert_array_equal(a.embedding, b.embedding)
    assert a.loss_history == b.loss_history
    assert not np.allclose(a.embedding, c.embedding)


def test_ablation_switches_remove_their_components(tiny):
    wo_dis = run(tiny, epochs=1, use_discriminator=False, **FAST).loss_history
    wo_bc = run(tiny, epochs=1, use_batch_classifier=False, **FAST).loss_history
    assert "loss_dis" not in wo_dis and "neg_log_bc" not in wo_dis and "loss_cls" in wo_dis
    assert "loss_cls" not in wo_bc and "batch_ce" not in wo_bc and "loss_dis" in wo_bc


@pytest.mark.parametrize("updates_all", [True, False])
def test_autoencoder_step_moves_adversaries_only_when_ae_updates_all(tiny, updates_all):
    trainer = trainer_for(tiny, ae_updates_all=updates_all, **FAST)
    net = trainer.net
    before = [p.detach().clone() for m in (net.discriminator, net.batch_classifier) for p in m.parameters()]
    enc_before = net.z_mean.weight.detach().clone()
    loss = trainer.autoencoder_loss(torch.arange(128), LossHistory())
    trainer.opt_ae.zero_grad()
    loss.backward()
    trainer.opt_ae.step()
    after = [p for m in (net.discriminator, net.batch_classifier) for p in m.parameters()]
    moved = any(not torch.equal(b, a) for b, a in zip(before, after))
    assert moved == updates_all
    assert not torch.equal(enc_before, net.z_mean.weight)


def test_contiguous_shuffle_gives_contiguous_blocks():
    cfg = scdreamer.parse_params(params(shuffle="contiguous", batch_size=16), "scdreamer", False)
    blocks = scdreamer.epoch_minibatches(100, cfg, torch.Generator().manual_seed(0), torch.device("cpu"))
    assert len(blocks) == 100 // 16
    for blk in blocks:
        assert (torch.diff(blk) == 1).all() and int(blk.max()) < 100


def test_scdreamer_mixes_batches_better_than_unintegrated(sim_small):
    adata = sim_small.copy()
    result = run(adata, epochs=20)
    unintegrated = ilisi(np.asarray(adata.obsm["X_pca"]), adata.obs["batch"])
    integrated = ilisi(result.embedding, adata.obs["batch"])
    assert result.embedding.shape == (adata.n_obs, 10)
    assert integrated > unintegrated + 0.2, (integrated, unintegrated)


@pytest.mark.slow  # ~10 CPU-s alone, but much slower after some other tests in this file (see report)
def test_scdreamer_sup_predicts_hidden_labels_far_above_chance(sim_small):
    from sklearn.metrics import f1_score

    adata = sim_small.copy()
    truth = adata.obs["label"].astype(str).to_numpy()
    hidden = hide_labels(truth, 0.5, seed=0)
    labels = truth.astype(object)
    labels[hidden] = np.nan
    adata.obs["label"] = labels
    result = run(adata, method="scdreamer_sup", epochs=50)
    assert result.predicted_labels.dtype == object and set(result.predicted_labels) <= set(truth)
    f1 = f1_score(truth[hidden], result.predicted_labels[hidden], average="macro")
    chance = 1.0 / len(set(truth))
    assert f1 > chance + 0.3, (f1, chance)
    assert np.isfinite(result.loss_history["celltype_ce"]).all()


# ----------------------------------------------------------------------------- errors and runner
def test_bad_inputs_give_clear_errors(tiny):
    with pytest.raises(ParamError, match="consistency"):
        run(tiny, consistency="sometimes")
    with pytest.raises(ParamError, match="lr_ae"):
        run(tiny, lr_ae=0.0)
    with pytest.raises(ParamError, match="batch_size"):
        run(tiny[:50].copy(), epochs=1)
    no_counts = tiny.copy()
    del no_counts.layers["counts"]
    with pytest.raises(ValueError, match=r"layers\['counts'\]"):
        run(no_counts, epochs=1)
    negative = tiny.copy()
    negative.layers["counts"] = -negative.layers["counts"]
    with pytest.raises(ValueError, match="negative"):
        run(negative, epochs=1)
    unlabelled = tiny.copy()
    unlabelled.obs["label"] = np.full(unlabelled.n_obs, np.nan, dtype=object)
    with pytest.raises(ValueError, match="no labelled cell"):
        run(unlabelled, method="scdreamer_sup", epochs=1)


def test_runner_writes_sup_predictions_with_hidden_labels(tmp_path, tiny):
    from methods import runner

    data_path = tmp_path / "tiny.h5ad"
    tiny.write_h5ad(data_path)
    out = tmp_path / "run.h5ad"
    info = runner.run(str(data_path), str(out), "scdreamer_sup", "default", {"epochs": 1, "n_hidden": 32},
                      seed=0, device="cpu", label_missing=0.5)
    assert info["status"] == "ok", info.get("error")
    run_file = ad.read_h5ad(out)
    assert run_file.obsm["X_emb"].shape == (tiny.n_obs, 10)
    assert run_file.obs["predicted_label"].notna().all()
    assert run_file.obs["label_hidden"].mean() == pytest.approx(0.5, abs=0.02)


@pytest.mark.parametrize("likelihood_input", ["scaled", "counts"])
def test_data_from_device_counts_matches_prepare_data(likelihood_input):
    """The GPU check's path (counts already on the device) gives prepare_data's tensors."""
    adata = tiny_counts_adata(n_cells=64, n_genes=40)
    cfg = scdreamer.parse_params(params(likelihood_input=likelihood_input), "scdreamer", False)
    ref, batches, _ = scdreamer.prepare_data(adata, cfg, "batch", None, torch.device("cpu"), "scdreamer")
    codes = torch.as_tensor(adata.obs["batch"].cat.codes.to_numpy().astype(np.int64))
    counts = torch.as_tensor(adata.layers["counts"].toarray())
    got = scdreamer.data_from_device_counts(counts, codes, len(batches), cfg, chunk_rows=16)
    for name in ("x", "target", "batch_onehot", "batch_codes"):
        torch.testing.assert_close(getattr(got, name), getattr(ref, name), rtol=1e-5, atol=1e-6)
    assert got.counts is None and ref.counts is None  # only keep_80pct_umis needs the counts
    for name in ("library_mean", "library_var", "input_max"):
        assert getattr(got, name) == pytest.approx(getattr(ref, name), rel=1e-5)
