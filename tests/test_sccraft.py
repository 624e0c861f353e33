"""Tests for scCRAFT (methods/sccraft.py, sccraft_triplets.py, sccraft_clusters.py)."""

from __future__ import annotations

import itertools
from collections import Counter

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import torch

from methods import registry
from methods.base import ParamError
from methods.sccraft import (
    DEFAULTS,
    SCCRAFTVAE,
    check_params,
    default_epochs,
    epoch_minibatches,
    integrate,
    nb_nll_elementwise,
)
from methods.sccraft_clusters import (
    cached_dual_resolution_clusters,
    dual_resolution_clusters,
    knn_connectivities,
)
from methods.sccraft_triplets import decode_pair_rank, make_triplets, triplet_loss

torch.set_num_threads(1)

# ---------------------------------------------------------------- triplets


def hand_made():
    """Batch 0: cells 0-2 (low 0; high 0, 0, 1) and 3-5 (low 1; high 2); batch 1: 6, 7 (low 0,
    high 5) and 8 (low 2). Cell 8 is alone in its (batch, low) group."""
    batch = torch.tensor([0, 0, 0, 0, 0, 0, 1, 1, 1])
    low = torch.tensor([0, 0, 0, 1, 1, 1, 0, 0, 2])
    high = torch.tensor([0, 0, 1, 2, 2, 2, 5, 5, 6])
    return batch, low, high


def test_triplets_hand_made_kept_and_skipped():
    batch, low, high = hand_made()
    a, p, n = make_triplets(batch, low, high, n_pos=15, generator=torch.Generator().manual_seed(0))
    # (0,2) and (1,2) are skipped: their high-resolution labels differ; cell 8 has no partner
    assert sorted(zip(a.tolist(), p.tolist())) == [(0, 1), (3, 4), (3, 5), (4, 5), (6, 7)]
    for anchor, neg in zip(a.tolist(), n.tolist()):
        assert batch[neg] == batch[anchor], "negative from another batch"
        assert low[neg] != low[anchor], "negative with the anchor's low-resolution label"
    assert dict(zip(a.tolist(), n.tolist()))[6] == 8  # the only candidate in batch 1
    # negatives of one group are distinct (sampled without replacement)
    negs_group01 = [neg for anchor, neg in zip(a.tolist(), n.tolist()) if anchor in (3, 4)]
    assert len(set(negs_group01)) == len(negs_group01) == 3


def test_triplets_deterministic_under_generator_seed():
    batch, low, high = (torch.randint(0, k, (300,), generator=torch.Generator().manual_seed(1)) for k in (3, 4, 12))
    first = make_triplets(batch, low, high, 15, torch.Generator().manual_seed(7))
    again = make_triplets(batch, low, high, 15, torch.Generator().manual_seed(7))
    other = make_triplets(batch, low, high, 15, torch.Generator().manual_seed(8))
    assert all(torch.equal(x, y) for x, y in zip(first, again))
    assert not all(torch.equal(x, y) for x, y in zip(first, other))


def test_triplets_caps_pairs_and_truncates_to_negatives():
    # group A: 10 cells (45 pairs) with 20 negatives -> 15 distinct pairs, 15 distinct negatives
    batch = torch.zeros(30, dtype=torch.long)
    low = torch.tensor([0] * 10 + [1] * 20)
    high = torch.zeros(30, dtype=torch.long)
    a, p, n = make_triplets(batch, low, high, 15, torch.Generator().manual_seed(0))
    in_a = a < 10
    pairs = list(zip(a[in_a].tolist(), p[in_a].tolist()))
    assert len(pairs) == 15 and len(set(pairs)) == 15 and all(x < y for x, y in pairs)
    assert len(set(n[in_a].tolist())) == 15 and (n[in_a] >= 10).all()
    # group A with only 4 negatives -> 4 triplets (zip of 15 pairs with 4 negatives)
    low4 = torch.tensor([0] * 10 + [1] * 4)
    a, p, n = make_triplets(torch.zeros(14, dtype=torch.long), low4, torch.zeros(14, dtype=torch.long), 15,
                            torch.Generator().manual_seed(0))
    assert int((a < 10).sum()) == 4 and sorted(n[a < 10].tolist()) == [10, 11, 12, 13]


def test_triplet_pairs_uniform_over_draws():
    batch = torch.zeros(12, dtype=torch.long)
    low = torch.tensor([0] * 6 + [1] * 6)
    high = torch.zeros(12, dtype=torch.long)
    gen = torch.Generator().manual_seed(3)
    counts = Counter()
    for _ in range(300):
        a, p, _ = make_triplets(batch, low, high, n_pos=3, generator=gen)
        counts.update((x, y) for x, y in zip(a.tolist(), p.tolist()) if x < 6)
    assert set(counts) == set(itertools.combinations(range(6), 2))  # all 15 pairs reachable
    assert min(counts.values()) > 30 and max(counts.values()) < 95  # expected 60 each


def test_decode_pair_rank_matches_itertools_order():
    for m in (2, 3, 7, 40, 513):
        pairs = list(itertools.combinations(range(m), 2))
        i, j = decode_pair_rank(torch.arange(len(pairs)), torch.full((len(pairs),), m))
        assert list(zip(i.tolist(), j.tolist())) == pairs


def test_triplet_loss_euclidean_and_squared():
    z = torch.tensor([[0.0, 0.0], [3.0, 0.0], [0.0, 1.0]], requires_grad=True)
    idx = (torch.tensor([0]), torch.tensor([1]), torch.tensor([2]))
    assert float(triplet_loss(z, *idx, margin=5.0)) == pytest.approx(3 - 1 + 5, abs=1e-4)
    assert float(triplet_loss(z, *idx, margin=5.0, squared=True)) == pytest.approx(9 - 1 + 5, abs=1e-4)
    empty = torch.empty(0, dtype=torch.long)
    zero = triplet_loss(z, empty, empty, empty)
    assert float(zero) == 0.0 and zero.requires_grad
    # the released code's plain torch.norm, not TripletMarginLoss (whose norms add eps = 1e-6,
    # visible when anchor and positive coincide: 4 + sqrt(8) * 1e-6 instead of 4)
    z = torch.zeros(3, 8)
    z[2, 0] = 1.0
    loss = triplet_loss(z, torch.tensor([0]), torch.tensor([1]), torch.tensor([2]), margin=5.0)
    assert float(loss) == 4.0


# ---------------------------------------------------------------- pieces


def test_nb_nll_matches_torch_negative_binomial():
    x = torch.tensor([[0.0, 1.0, 5.0], [2.0, 0.0, 30.0]])
    mu = torch.tensor([[0.5, 2.0, 4.0], [1.0, 0.1, 25.0]])
    theta = torch.tensor([[1.0, 3.0, 0.5], [10.0, 2.0, 7.0]])
    ref = -torch.distributions.NegativeBinomial(total_count=theta, logits=torch.log(mu / theta)).log_prob(x)
    assert torch.allclose(nb_nll_elementwise(x, mu, theta), ref, atol=1e-4)


def test_decoder_g2_gather_equals_direct_evaluation():
    torch.manual_seed(0)
    vae = SCCRAFTVAE(20, 3, 8)
    z, b = torch.randn(6, 8), torch.tensor([0, 1, 2, 2, 1, 0])
    mu, theta = vae.decode(z, b)
    onehot = torch.eye(3)[b]
    comb = torch.relu(vae.g1(torch.cat([z, onehot], 1)) + vae.g2(onehot))
    log_mu, log_theta = vae.heads(comb).chunk(2, 1)
    assert torch.allclose(mu, log_mu.exp(), atol=1e-6) and torch.allclose(theta, log_theta.exp(), atol=1e-6)


def test_epoch_sampling_code_and_balanced():
    codes = torch.tensor([0] * 1000 + [1] * 100 + [2] * 30)
    gen = torch.Generator().manual_seed(0)
    mbs = epoch_minibatches(codes, 3, 512, 1024, False, gen, torch.device("cpu"))
    assert [m.numel() for m in mbs] == [1024, 512]
    allidx = torch.cat(mbs)
    assert torch.bincount(codes[allidx]).tolist() == [512, 512, 512]
    assert torch.unique(allidx[codes[allidx] == 0]).numel() == 512  # big batch: no replacement
    bal = epoch_minibatches(codes, 3, 512, 512, True, gen, torch.device("cpu"))
    for m in bal:
        counts = torch.bincount(codes[m], minlength=3)
        assert counts.min() == counts.max()  # strictly balanced (paper option)


def test_default_epochs_rule():
    assert default_epochs(10_000, 3) == 150
    assert default_epochs(1_000_000, 2) == int(1.5 * 1_000_000 / 1024)


def test_bad_params_named():
    with pytest.raises(ParamError, match="lambda_D"):
        check_params({"lambda_D": -0.1})
    with pytest.raises(ParamError, match="high_res_scope"):
        check_params({"high_res_scope": "local"})
    with pytest.raises(ParamError, match="max_epochs"):
        check_params({"max_epochs": 0})


def test_registry_entry_accepts_grid_params():
    params = registry.merge_params("sccraft", {"lambda_D": 0.5, "lambda_T": 2, "low_resolution": 1.0})
    assert params["lambda_D"] == 0.5 and params["warmup_epochs"] == 50
    spec = registry.get("sccraft")
    from methods.registry import NOVEL_PARAMS

    # the module's defaults and the registry agree (the held-out-type parameters are the registry's)
    assert {k: v for k, v in spec.defaults.items() if k not in NOVEL_PARAMS} == DEFAULTS
    assert spec.output == "embedding" and spec.input == "lognorm" and spec.gpu


# ---------------------------------------------------------------- clustering


def blob_matrix(seed=0, n_per=40, n_types=4, n_genes=30):
    rng = np.random.default_rng(seed)
    centers = rng.gamma(2.0, 1.0, size=(n_types, n_genes)) * 3
    X = np.vstack([np.log1p(rng.poisson(c, size=(n_per, n_genes))) for c in centers])
    return X.astype(np.float32), np.repeat(np.arange(n_types), n_per)


def test_cluster_cache_hit_and_key(tmp_path, monkeypatch):
    monkeypatch.setenv("BENCH_CACHE_DIR", str(tmp_path))
    X, _ = blob_matrix()
    params = {"low_resolution": 0.5, "high_resolution": 3.0, "method": "leiden", "high_scope": "global"}
    low, high, hit = cached_dual_resolution_clusters(X, **params)
    assert not hit and len(list((tmp_path / "sccraft_clusters").glob("*.npz"))) == 1
    low2, high2, hit2 = cached_dual_resolution_clusters(X, **params)
    assert hit2 and np.array_equal(low, low2) and np.array_equal(high, high2)
    _, _, hit3 = cached_dual_resolution_clusters(X, **{**params, "low_resolution": 1.0})
    assert not hit3  # parameters are part of the key
    X_other = X.copy()
    X_other[0, 0] += 1.0
    _, _, hit4 = cached_dual_resolution_clusters(X_other, **params)
    assert not hit4  # data are part of the key
    assert not list(tmp_path.rglob("*.tmp*"))  # atomic writes leave no temp files


def test_knn_connectivities_equal_scanpy_neighbors():
    """The numba-free graph is the one sc.pp.neighbors builds (exact kNN branch, < 8192 cells)."""
    import scanpy as sc

    rng = np.random.default_rng(0)
    X = rng.normal(size=(400, 20)).astype(np.float32) + np.repeat(np.arange(4), 100)[:, None] * 3
    X[5] = X[6]  # a duplicated cell: zero distance to a non-self neighbour
    holder = ad.AnnData(X=X, obsm={"X_pca": X})
    ours = knn_connectivities(holder, 15)
    sc.pp.neighbors(holder, n_neighbors=15, use_rep="X_pca", random_state=0)
    ref = holder.obsp["connectivities"].tocsr()
    assert ours.nnz == ref.nnz and abs(ours - ref).max() < 1e-5


def test_clusters_recover_types_and_within_low_nests():
    X, types = blob_matrix(seed=1)
    low, high = dual_resolution_clusters(X, 0.5, 3.0, "leiden", "within_low")
    from sklearn.metrics import adjusted_rand_score

    assert adjusted_rand_score(types, low) > 0.9
    for h in np.unique(high):  # paper option: every high cluster lies inside one low cluster
        assert np.unique(low[high == h]).size == 1
    assert np.unique(high).size > np.unique(low).size
    low_l, _ = dual_resolution_clusters(X, 0.5, 3.0, "louvain", "global")
    assert adjusted_rand_score(types, low_l) > 0.9


# ---------------------------------------------------------------- training


def toy_adata(seed=0, n_per=60, n_types=3, n_genes=60):
    """Three cell types in two batches; batch 2 multiplies a random half of the genes by 3."""
    rng = np.random.default_rng(seed)
    means = rng.gamma(1.5, 2.0, size=(n_types, n_genes))
    batch_factor = np.where(rng.random(n_genes) < 0.5, 3.0, 1.0)
    rows, batches, labels = [], [], []
    for b in range(2):
        for t in range(n_types):
            mean = means[t] * (batch_factor if b else 1.0)
            counts = rng.poisson(mean, size=(n_per, n_genes))
            rows.append(np.log1p(counts / np.maximum(counts.sum(1, keepdims=True), 1) * 1e4 / 100))
            batches += [f"B{b}"] * n_per
            labels += [f"T{t}"] * n_per
    obs = pd.DataFrame({"batch": pd.Categorical(batches), "label": pd.Categorical(labels)},
                       index=[f"c{i}" for i in range(len(batches))])
    return ad.AnnData(X=np.vstack(rows).astype(np.float32), obs=obs)


FAST = {"max_epochs": 12, "warmup_epochs": 4, "cells_per_batch": 64, "minibatch_size": 128,
        "n_latent": 16, "high_resolution": 3.0, "pca_dims": 10}


def test_decoder_gradients_do_not_depend_on_thread_timing():
    # with two threads, a gather's backward (index_put with accumulate) adds in the order the
    # threads happen to run, so the same seed gave another embedding in every run
    torch.manual_seed(0)
    vae = SCCRAFTVAE(n_genes=40, n_batches=3, n_latent=8)
    z, batch = torch.randn(2048, 8), torch.randint(0, 3, (2048,))
    grads = []
    torch.set_num_threads(2)
    try:
        for _ in range(8):
            vae.zero_grad()
            mu, theta = vae.decode(z, batch)
            (mu.sum() + theta.sum()).backward()
            grads.append(torch.cat([p.grad.flatten() for p in vae.g2.parameters()]))
    finally:
        torch.set_num_threads(1)
    assert all(torch.equal(grads[0], g) for g in grads[1:])


def test_training_loss_goes_down_and_seed_determinism(monkeypatch):
    monkeypatch.delenv("BENCH_CACHE_DIR", raising=False)
    data = toy_adata()
    first = integrate(data, batch_key="batch", label_key="label", params=FAST, seed=3, device="cpu")
    hist = first.loss_history
    assert first.epochs == 12 and len(hist["loss"]) == 12
    assert np.mean(hist["reconstruction"][-3:]) < hist["reconstruction"][0]
    assert np.mean(hist["loss"][-3:]) < hist["loss"][0]
    assert first.embedding.shape == (data.n_obs, 10) and np.isfinite(first.embedding).all()
    again = integrate(data, batch_key="batch", label_key="label", params=FAST, seed=3, device="cpu")
    assert np.array_equal(first.embedding, again.embedding)
    other = integrate(data, batch_key="batch", label_key="label", params=FAST, seed=4, device="cpu")
    assert not np.allclose(first.embedding, other.embedding)


def test_holdout_cells_are_embedded_and_their_reconstruction_recorded(monkeypatch):
    monkeypatch.delenv("BENCH_CACHE_DIR", raising=False)
    data = toy_adata()
    res = integrate(data, batch_key="batch", label_key="label", params={**FAST, "max_epochs": 30, "holdout": 0.25},
                    seed=0, device="cpu")
    held = np.asarray(res.loss_history["reconstruction_validation"])
    assert held.size == 30 and np.isfinite(held).all()
    assert res.embedding.shape[0] == data.n_obs and np.isfinite(res.embedding).all()
    assert held[-1] < held[0]  # the held-out cells are reconstructed better as the model learns
    with pytest.raises(ParamError, match="holdout"):
        integrate(data, batch_key="batch", label_key="label", params={**FAST, "holdout": 0.5}, seed=0, device="cpu")


def test_adversary_gated_by_warmup_and_mixes_batches(monkeypatch):
    from harmonypy import compute_lisi

    monkeypatch.delenv("BENCH_CACHE_DIR", raising=False)
    data = toy_adata()
    run = {"batch_key": "batch", "label_key": "label", "seed": 0, "device": "cpu"}
    off = integrate(data, params={**FAST, "lambda_D": 0.0}, **run)
    warm_all = integrate(data, params={**FAST, "lambda_D": 0.7, "warmup_epochs": 12}, **run)
    on = integrate(data, params={**FAST, "lambda_D": 0.7, "warmup_epochs": 0}, **run)
    # the adversarial term is off during warm-up: lambda_D has no effect until then
    assert np.array_equal(off.embedding, warm_all.embedding)
    assert not np.allclose(off.embedding, on.embedding)
    # with the adversary on, the discriminator separates the batches less well
    assert np.mean(on.loss_history["discriminator"][-4:]) > np.mean(off.loss_history["discriminator"][-4:])
    meta = pd.DataFrame({"batch": data.obs["batch"].astype(str).to_numpy()})
    pca = np.linalg.svd(data.X - data.X.mean(0), full_matrices=False)[0][:, :10]
    assert compute_lisi(on.embedding, meta, ["batch"]).mean() > compute_lisi(pca, meta, ["batch"]).mean() + 0.3


def test_bad_data_named():
    data = toy_adata()
    with pytest.raises(ValueError, match="batch key 'sample'"):
        integrate(data, batch_key="sample", label_key="label", params=FAST, seed=0, device="cpu")
    one = data[data.obs["batch"] == "B0"].copy()
    with pytest.raises(ValueError, match="single batch"):
        integrate(one, batch_key="batch", label_key="label", params=FAST, seed=0, device="cpu")
    neg = data.copy()
    neg.X[0, 0] = -1.0
    with pytest.raises(ValueError, match="negative values"):
        integrate(neg, batch_key="batch", label_key="label", params=FAST, seed=0, device="cpu")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU")
def test_gpu_path_runs_and_mixes():
    data = toy_adata()
    res = integrate(data, batch_key="batch", label_key="label", params=FAST, seed=0, device="cuda")
    assert np.isfinite(res.embedding).all() and res.extra["peak_gpu_mb"] > 0


# ---------------------------------------------------------------- simulated scenarios

# resolution 1: the paper's choice for simulations (Methods, "Hyperparameter setting")
SIM = {"max_epochs": 120, "warmup_epochs": 40, "cells_per_batch": 128, "minibatch_size": 256,
       "low_resolution": 1.0, "pca_dims": 30}


def simulated(scenario: str):
    """A small preprocessed scCRAFT simulation scenario (scanpy: 1e4, log1p, 300 seurat HVGs)."""
    import scanpy as sc

    simulate = pytest.importorskip("datasets.simulate").simulate
    data = simulate(scenario=scenario, seed=1, n_cells=1600, n_genes=800, min_genes=20)
    sc.pp.normalize_total(data, target_sum=1e4)
    sc.pp.log1p(data)
    sc.pp.highly_variable_genes(data, n_top_genes=300, batch_key="batch", flavor="seurat", subset=True)
    data.X = data.X.astype(np.float32)
    data.obsm["X_pca"] = sc.pp.pca(data.X, n_comps=30, random_state=0)
    return data


def ilisi_and_nmi(emb: np.ndarray, batch, labels) -> tuple[float, float]:
    """Mean iLISI (harmonypy, perplexity 30) and the best Leiden NMI over a resolution grid."""
    import scanpy as sc
    from harmonypy import compute_lisi
    from sklearn.metrics import normalized_mutual_info_score

    meta = pd.DataFrame({"batch": np.asarray(batch).astype(str)})
    ilisi = float(compute_lisi(np.asarray(emb, dtype=np.float64), meta, ["batch"], perplexity=30).mean())
    holder = ad.AnnData(X=np.asarray(emb, dtype=np.float32))
    sc.pp.neighbors(holder, use_rep="X", n_neighbors=15, random_state=0)
    nmis = []
    for res in (0.1, 0.2, 0.4, 0.6, 0.8, 1.0):
        sc.tl.leiden(holder, resolution=res, flavor="igraph", n_iterations=2, random_state=0)
        nmis.append(normalized_mutual_info_score(labels, holder.obs["leiden"]))
    return ilisi, max(nmis)


@pytest.mark.slow
@pytest.mark.parametrize("scenario", ["common-3", "rare1-0.1"])
def test_simulated_scenario_mixes_batches_and_keeps_types(scenario, monkeypatch):
    monkeypatch.delenv("BENCH_CACHE_DIR", raising=False)
    data = simulated(scenario)
    res = integrate(data, batch_key="batch", label_key="celltype", params=SIM, seed=0, device="cpu")
    base_ilisi, base_nmi = ilisi_and_nmi(data.obsm["X_pca"], data.obs["batch"], data.obs["celltype"])
    ilisi, nmi = ilisi_and_nmi(res.embedding, data.obs["batch"], data.obs["celltype"])
    assert ilisi > base_ilisi + 0.1, (ilisi, base_ilisi)
    assert nmi > base_nmi - 0.1, (nmi, base_nmi)
