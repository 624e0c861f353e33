"""sysVI family (methods/sysvi.py) and the scvi-tools SysVI baseline (methods/sysvi_scvitools.py)."""

from __future__ import annotations

import os

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from methods import registry
from methods.base import ParamError, TrainingDivergedError

FAMILY = ("cvae", "vamp", "cyc", "sysvi", "adv")
SMALL_NET = {"n_hidden": 64, "n_latent": 8}


def simulate_two_systems(n_cells=700, n_genes=200, n_types=5, batch_strength=0.3, seed=0):
    """Two batches (= two systems) with a strong multiplicative batch effect and n_types cell types.

    Own generator (not the ``sim_small`` fixture): on sim_small, both our sysVI and scvi-tools'
    SysVI collapse the cell types under the cycle loss at this training length (see report), so
    the mixing check uses data where the method is meant to work: PCA does not mix batches here.
    """
    import anndata as ad

    rng = np.random.default_rng(seed)
    types, batch = rng.integers(0, n_types, n_cells), rng.integers(0, 2, n_cells)
    base = rng.gamma(2.0, 0.5, n_genes)
    type_fc = np.exp(rng.normal(0, 1.0, (n_types, n_genes)) * (rng.random((n_types, n_genes)) < 0.2))
    batch_fc = np.exp(rng.normal(0, batch_strength, (2, n_genes)) * (rng.random((2, n_genes)) < 0.5))
    mu = base * type_fc[types] * batch_fc[batch] * rng.lognormal(0, 0.2, n_cells)[:, None] * 5
    counts = rng.poisson(rng.gamma(5.0, mu / 5.0)).astype(np.float32)
    lib = np.maximum(counts.sum(1, keepdims=True), 1)
    obs = pd.DataFrame({"batch": pd.Categorical([f"B{b}" for b in batch]),
                        "label": pd.Categorical([f"T{t}" for t in types])},
                       index=[f"c{i}" for i in range(n_cells)])
    obs["system"] = obs["batch"]
    adata = ad.AnnData(X=sp.csr_matrix(np.log1p(counts / lib * 1e4).astype(np.float32)), obs=obs)
    adata.layers["counts"] = sp.csr_matrix(counts)
    return adata


def ilisi_and_nmi(emb, adata):
    """Cheap scores: iLISI (scib-metrics on a sklearn 30-NN graph, unscaled 1..2) and KMeans NMI."""
    import scib_metrics
    from scib_metrics.nearest_neighbors import NeighborsResults
    from sklearn.cluster import KMeans
    from sklearn.metrics import normalized_mutual_info_score
    from sklearn.neighbors import NearestNeighbors

    dist, idx = NearestNeighbors(n_neighbors=30).fit(emb).kneighbors(emb)
    batches = adata.obs["batch"].cat.codes.to_numpy()
    ilisi = float(scib_metrics.ilisi_knn(NeighborsResults(indices=idx, distances=dist), batches, scale=False))
    clusters = KMeans(adata.obs["label"].nunique(), n_init=5, random_state=0).fit_predict(emb)
    return ilisi, normalized_mutual_info_score(adata.obs["label"], clusters)


def run(name, adata, seed=0, **overrides):
    from methods import sysvi

    params = registry.merge_params(name, overrides)
    return sysvi.integrate(adata, batch_key="batch", label_key="label", params=params, seed=seed, device="cpu")


@pytest.fixture(scope="module")
def small():
    return simulate_two_systems(n_cells=300, n_genes=100)


@pytest.mark.parametrize("name", FAMILY)
def test_each_model_trains_and_loss_goes_down(small, name):
    res = run(name, small, max_epochs=12, **SMALL_NET)
    hist = res.loss_history
    assert res.embedding.shape == (small.n_obs, 8) and res.epochs == 12
    assert len(hist["loss"]) == 12 and hist["loss"][-1] < 0.8 * hist["loss"][0]
    assert hist["reconstruction"][-1] < hist["reconstruction"][0]
    assert ("cycle" in hist) == (name in ("cyc", "sysvi"))
    assert ("classifier" in hist) == (name == "adv")
    held_out = hist["reconstruction_validation"]  # the 10 % held-out cells, every epoch
    assert len(held_out) == 12 and held_out[-1] < held_out[0]
    if "cycle" in hist:
        assert hist["cycle"][-1] < hist["cycle"][0]


def test_fixed_pseudo_inputs_still_learn_mixing_weights(small):
    """trainable_prior: false fixes the pseudo-inputs only; both references always train the
    mixing logits w (scvi-tools' VampPrior creates w without requires_grad=trainable_priors)."""
    from methods import sysvi

    cfg = sysvi.parse_params(registry.merge_params("vamp", {"trainable_prior": False, "max_epochs": 3,
                                                            **SMALL_NET}), "vamp")
    model, _ = sysvi.train_sysvae(small, batch_key="batch", cfg=cfg, seed=0, device="cpu")
    prior = model.prior
    assert not prior.u.requires_grad and prior.w.requires_grad
    assert not np.allclose(prior.w.detach().numpy(), 0.0)  # learned away from the zero initialisation
    rows = small.X.toarray()
    assert all(np.isclose(rows, r, atol=1e-6).all(1).any() for r in prior.u.detach().numpy())  # u unchanged


def test_registry_switches():
    d = {n: registry.get(n).defaults for n in FAMILY}
    assert [d[n]["prior"] for n in FAMILY] == ["standard", "vamp", "standard", "vamp", "standard"]
    assert d["cyc"]["cycle_weight"] > 0 and d["sysvi"]["cycle_weight"] > 0 and d["cvae"]["cycle_weight"] == 0
    assert d["adv"]["kappa"] > 0 and all(d[n]["kappa"] == 0 for n in FAMILY if n != "adv")
    assert all(registry.get(n).gpu for n in (*FAMILY, "davae", "sysvi_scvitools"))


def test_same_seed_same_embedding_on_cpu(small):
    a = run("sysvi", small, seed=3, max_epochs=3, **SMALL_NET)
    b = run("sysvi", small, seed=3, max_epochs=3, **SMALL_NET)
    c = run("sysvi", small, seed=4, max_epochs=3, **SMALL_NET)
    np.testing.assert_array_equal(a.embedding, b.embedding)
    assert not np.allclose(a.embedding, c.embedding)


def test_bf16_mixed_precision_trains_reproducibly_and_tracks_fp32(small):
    """bf16 autocast changes the arithmetic, not the model: same seed -> same embedding, loss goes
    down, and the loss curve stays close to fp32's; the embedding is always computed in fp32."""
    fp32 = run("sysvi", small, seed=1, max_epochs=8, **SMALL_NET)
    a = run("sysvi", small, seed=1, max_epochs=8, precision="bf16-mixed", **SMALL_NET)
    b = run("sysvi", small, seed=1, max_epochs=8, precision="bf16-mixed", **SMALL_NET)
    np.testing.assert_array_equal(a.embedding, b.embedding)
    assert a.embedding.dtype == np.float32 and a.extra["precision"] == "bf16-mixed"
    assert fp32.extra["precision"] == "fp32" and not np.array_equal(a.embedding, fp32.embedding)
    loss_a, loss_f = np.array(a.loss_history["loss"]), np.array(fp32.loss_history["loss"])
    assert loss_a[-1] < 0.8 * loss_a[0]
    np.testing.assert_allclose(loss_a, loss_f, rtol=0.05)
    adv = run("adv", small, seed=1, max_epochs=4, precision="bf16-mixed", **SMALL_NET)  # classifier under autocast
    assert np.isfinite(adv.loss_history["classifier"]).all()


def test_port_options_run(small):
    res = run("sysvi", small, max_epochs=4, variant="scvi_tools", cycle_covariates="real",
              cycle_distance="mse_standard_separate", **SMALL_NET)
    assert np.isfinite(res.embedding).all() and res.loss_history["loss"][-1] < res.loss_history["loss"][0]


@pytest.mark.parametrize("cycle_input, decodes", [("other_system", 2), ("own_system", 1)])
def test_cycle_encoder_reads_the_other_system_decode_or_the_own_reconstruction(small, cycle_input, decodes):
    """Paper code: the cycle re-encodes decode(z, other system). scvi-tools 1.4.2: it re-encodes the
    reconstruction in the cell's own system (px.loc) under the other system's label, so one decode."""
    import torch

    from methods import sysvi

    cfg = sysvi.parse_params(registry.merge_params("cyc", {"cycle_input": cycle_input, "max_epochs": 1,
                                                           **SMALL_NET}), "cyc")
    model, rec = sysvi.train_sysvae(small, batch_key="batch", cfg=cfg, seed=0, device="cpu")
    decoded, encoded = [], []
    model.decode = lambda z, cov, f=model.decode: decoded.append((f(z, cov), cov)) or decoded[-1][0]
    model.encode = lambda x, cov, f=model.encode: encoded.append((x, cov)) or f(x, cov)
    torch.manual_seed(0)
    sysvi.step_losses(model, rec["X"][:20], None, rec["sys_codes"][:20], 2)
    assert len(decoded) == decodes and len(encoded) == 2
    (x_cyc, cov_cyc), (x_rec, cov_own) = encoded[1], decoded[0]
    assert (cov_cyc == 1 - cov_own).all()  # the cycle pass is labelled with the other system
    assert torch.equal(x_cyc, x_rec) == (cycle_input == "own_system")
    if cycle_input == "other_system":
        assert torch.equal(x_cyc, decoded[1][0]) and (decoded[1][1] == cov_cyc).all()


def test_system_encoding_one_column_or_one_hot(small):
    """Paper code: one 0/1 system column for two systems; scvi-tools: one-hot, also for two. Every
    encoder and decoder layer and the VampPrior's pseudo-inputs carry it."""
    from methods import sysvi

    for encoding, width in (("column", 1), ("one_hot", 2)):
        cfg = sysvi.parse_params(registry.merge_params("sysvi", {"system_encoding": encoding, "max_epochs": 1,
                                                                 **SMALL_NET}), "sysvi")
        model, rec = sysvi.train_sysvae(small, batch_key="batch", cfg=cfg, seed=0, device="cpu")
        assert model.encoder.n_cov == model.decoder.n_cov == model.prior.u_cov.shape[1] == width
        cols = sysvi.system_columns(rec["sys_codes"], 2, encoding)
        codes = rec["sys_codes"].numpy()
        assert (cols.argmax(1).numpy() == codes).all() if width == 2 else (cols[:, 0].numpy() == codes).all()
        assert np.isfinite(sysvi.embed(model, rec["X"], None, rec["sys_codes"], 2)).all()


def test_batch_covariate_auto_drops_a_copy_of_the_system(small):
    assert run("cvae", small, max_epochs=1, **SMALL_NET).extra["batch_covariate"] is False
    nested = small.copy()
    nested.obs["batch"] = pd.Categorical([f"{s}_{i % 2}" for i, s in enumerate(nested.obs["system"])])
    assert run("cvae", nested, max_epochs=1, **SMALL_NET).extra["batch_covariate"] is True


@pytest.mark.slow  # ~25 s CPU (3 models x 50 epochs); more wall time on a busy machine
def test_cycle_and_sysvi_mix_batches_and_keep_cell_types():
    data = simulate_two_systems()
    from sklearn.decomposition import PCA

    scores = {"pca": ilisi_and_nmi(PCA(15, random_state=0).fit_transform(data.X.toarray()), data)}
    for name in ("cvae", "cyc", "sysvi"):
        scores[name] = ilisi_and_nmi(run(name, data, max_epochs=50, cycle_weight=5.0 if name != "cvae" else 0.0)
                                     .embedding, data)
    for name in ("cyc", "sysvi"):
        assert scores[name][0] > scores["pca"][0] + 0.1, scores
        assert scores[name][0] > scores["cvae"][0] + 0.05, scores
        assert scores[name][1] > scores["cvae"][1] - 0.1, scores


def test_diverging_training_fails_with_clear_message(small):
    with pytest.raises(TrainingDivergedError, match=r"non-finite \w+ at epoch \d+"):
        run("cvae", small, max_epochs=5, lr=1e6, adam_eps=1e-8, **SMALL_NET)


def test_nan_input_is_rejected(small):
    bad = small.copy()
    X = bad.X.toarray()
    X[0, 0] = np.nan
    bad.X = X
    with pytest.raises(ValueError, match=r"adata.X .* NaN"):
        run("cvae", bad, max_epochs=1, **SMALL_NET)


@pytest.mark.parametrize("override, match", [
    ({"kl_weight": -1.0}, "kl_weight"), ({"cycle_weight": -2}, "cycle_weight"), ({"kappa": -1}, "kappa"),
    ({"prior": "gmm"}, "prior"), ({"cycle_covariates": "mock"}, "cycle_covariates"),
    ({"variant": "v2"}, "variant"), ({"max_epochs": 0}, "max_epochs"), ({"dropout": 1.0}, "dropout"),
    ({"n_prior_components": 0}, "n_prior_components"), ({"use_batch_covariate": "maybe"}, "use_batch_covariate"),
    ({"precision": "fp16"}, "precision"), ({"cycle_input": "px_cycle"}, "cycle_input"),
    ({"system_encoding": "binary"}, "system_encoding"),
])
def test_bad_params_are_rejected(small, override, match):
    with pytest.raises(ParamError, match=match):
        run("sysvi", small, **override)


def test_missing_system_column_is_named(small):
    with pytest.raises(ValueError, match=r"obs\['tissue'\]"):
        run("sysvi", small, system_key="tissue", max_epochs=1)


def test_default_epochs_formula():
    from methods.sysvi import default_epochs

    assert default_epochs(20_000) == 400 and default_epochs(40_000) == 200 and default_epochs(10**8) == 1


def test_scvi_tools_sysvi_runs_and_records_epochs(small):
    from methods import sysvi_scvitools

    params = registry.merge_params("sysvi_scvitools", {"max_epochs": 3, "n_hidden": 32})
    res = sysvi_scvitools.integrate(small, batch_key="batch", label_key="label", params=params, seed=0,
                                    device="cpu")
    assert res.embedding.shape == (small.n_obs, 15) and res.epochs == 3
    assert res.loss_history["reconstruction_loss_train"][-1] < res.loss_history["reconstruction_loss_train"][0]
    assert len(res.loss_history["reconstruction_loss_validation"]) == 3  # held-out cells, every epoch
    with pytest.raises(ParamError, match="cycle_weight"):
        sysvi_scvitools.integrate(small, batch_key="batch", label_key="label", seed=0, device="cpu",
                                  params={**params, "cycle_weight": -1.0})
    with pytest.raises(ParamError, match="precision must be one of fp32, bf16-mixed"):
        sysvi_scvitools.integrate(small, batch_key="batch", label_key="label", seed=0, device="cpu",
                                  params={**params, "precision": "16-mixed"})


# scvi-tools' SysVI by option: the four differences set as scvi-tools 1.4.2 has them
AS_SCVI_TOOLS = {"cycle_input": "own_system", "system_encoding": "one_hot", "cycle_covariates": "real",
                 "variant": "scvi_tools"}
def _shared_weights(port, ref, n_batches: int):
    """(port parameter, scvi-tools parameter in the port's layout) pairs after copying ref's values
    into port. scvi-tools' FCLayers read [input, system one-hot, batch one-hot]; the port reads
    [input, batch one-hot, system]: the covariate columns of every layer's weight are permuted."""
    import torch

    def layout(w, n_in):  # scvi-tools column order -> the port's
        return torch.cat([w[:, :n_in], w[:, n_in + 2:n_in + 2 + n_batches], w[:, n_in:n_in + 2]], dim=1)

    pairs = []
    for mlp, fc in ((port.encoder, ref.encoder.decoder_y), (port.decoder, ref.decoder.decoder_y)):
        for seq, layer in zip(mlp.layers, fc.fc_layers, strict=True):
            n_in = seq[0].in_features - n_batches - 2
            pairs += [(seq[0].weight, layer[0].weight, lambda t, n=n_in: layout(t, n)),
                      (seq[0].bias, layer[0].bias, None), (seq[1].weight, layer[1].weight, None),
                      (seq[1].bias, layer[1].bias, None)]
    for mine, theirs in ((port.z_mean, ref.encoder.mean_encoder), (port.z_var, ref.encoder.var_encoder.encoder),
                         (port.x_mean, ref.decoder.mean_encoder)):
        pairs += [(mine.weight, theirs.weight, None), (mine.bias, theirs.bias, None)]
    pairs += [(port.x_var_param, ref.decoder.var_encoder.var_param, lambda t: t[0]),
              (port.prior.u, ref.prior.u, None), (port.prior.w, ref.prior.w, lambda t: t.view(-1)),
              (port.prior.u_cov, None, None)]
    with torch.no_grad():
        for mine, theirs, how in pairs[:-1]:
            mine.copy_(theirs if how is None else how(theirs))
        sys_oh, batch_oh = ref.prior.u_cat  # the pseudo-inputs' categories: scvi-tools keeps them fixed
        port.prior.u_cov.copy_(torch.cat([batch_oh, sys_oh], dim=1))
    return [(a, b, how or (lambda t: t)) for a, b, how in pairs[:-1]]


def test_port_set_as_scvi_tools_computes_scvi_tools_loss_and_gradients(small, monkeypatch):
    """One minibatch through both models with the same weights, the same posterior noise and no
    dropout (the only random draws then): the port set as scvi-tools gives scvi-tools 1.4.2's
    SysVAE loss terms (reconstruction, VampPrior KL, cycle), total loss and every gradient, with a
    within-system batch covariate. Fails on any difference of model or loss, down to the order in
    which the VampPrior's eval-mode encode reads the BatchNorm running statistics."""
    import scvi
    import torch
    from scvi.external import SysVI

    from methods import sysvi

    data = small.copy()
    data.obs["system"] = data.obs["system"].astype(str).astype("category")
    data.obs["batch"] = pd.Categorical([f"{s}_{i % 2}" for i, s in enumerate(data.obs["system"])])
    scvi.settings.seed = 0
    SysVI.setup_anndata(data, batch_key="system", categorical_covariate_keys=["batch"])
    ref = SysVI(data, n_latent=8, n_hidden=64, dropout_rate=0.0).module
    cfg = sysvi.parse_params(registry.merge_params("sysvi", {**AS_SCVI_TOOLS, "dropout": 0.0, **SMALL_NET}))
    port = sysvi.SysVAE(data.n_vars, 4 + 2, 2, cfg)
    X = torch.as_tensor(data.X.toarray())
    sys_codes = torch.tensor(data.obs["system"].cat.codes.to_numpy(), dtype=torch.int64)
    batch_codes = torch.tensor(data.obs["batch"].cat.codes.to_numpy(), dtype=torch.int64)
    batch_oh = torch.nn.functional.one_hot(batch_codes, 4).float()
    port.attach_vamp_prior(X, torch.cat([batch_oh, sysvi.system_columns(sys_codes, 2, "one_hot")], 1),
                           torch.Generator().manual_seed(0))
    pairs = _shared_weights(port, ref, n_batches=4)
    with torch.no_grad():  # move the per-gene variance and mixing logits off their zero initialisation
        shift = torch.randn(data.n_vars + 5, generator=torch.Generator().manual_seed(1)) * 0.5
        port.x_var_param += shift[:-5]
        ref.decoder.var_encoder.var_param += shift[None, :-5]
        port.prior.w += shift[-5:]
        ref.prior.w += shift[-5:].view(5, 1, 1)

    eps = torch.randn(128, 8, generator=torch.Generator().manual_seed(2))
    normal_rsample, randn_like = torch.distributions.Normal.rsample, torch.randn_like
    monkeypatch.setattr(torch.distributions.Normal, "rsample", lambda d, shape=(): (
        d.loc + d.scale * eps if d.loc.shape == eps.shape else normal_rsample(d, torch.Size(shape))))
    monkeypatch.setattr(torch, "randn_like", lambda t, **kw: eps.clone() if t.shape == eps.shape
                        else randn_like(t, **kw))
    idx = torch.arange(128)
    port.train()
    ref.train()
    terms = sysvi.step_losses(port, X[idx], batch_oh[idx], sys_codes[idx], 2)
    loss = (terms["reconstruction"] + terms["kl"]).mean() + 2.0 * terms["cycle"].mean()
    _, _, out = ref.forward({"X": X[idx], "batch": sys_codes[idx, None], "extra_categorical_covs": batch_codes[idx, None]},
                            loss_kwargs={"kl_weight": 1.0, "z_distance_cycle_weight": 2.0})
    close = dict(rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(terms["reconstruction"], out.reconstruction_loss["reconstruction_loss"], **close)
    torch.testing.assert_close(terms["kl"], out.kl_local["kl_local"], **close)
    torch.testing.assert_close(terms["cycle"].mean(), out.extra_metrics["cycle_loss"], **close)
    torch.testing.assert_close(loss, out.loss, **close)
    loss.backward()
    out.loss.backward()
    for mine, theirs, how in pairs:
        torch.testing.assert_close(mine.grad, how(theirs.grad), rtol=1e-3, atol=1e-4)


MIX_SEEDS = (0, 1, 2)
# 200 epochs: the fewest at which the mixing shows on these data (seed 0: the port set as scvi-tools
# 0.41, scvi-tools 0.53, the paper code 0.00). Cheaper settings did not show it (port set as scvi-tools,
# seed 0): 100 epochs 0.02; 60 epochs at lr 4e-3 0.05 or batch 32 0.07; 500 HVGs, 128 hidden units and
# 150 epochs 0.04; 551 cells, 500 HVGs, 100 epochs 0.02-0.06 (scvi-tools 0.00)
MIX_EPOCHS = 200


def scaled_ilisi(emb, adata) -> float:
    """iLISI as the benchmark scores it: scib-metrics on the 90-NN graph, scaled to [0, 1]."""
    import scib_metrics
    from scib_metrics.nearest_neighbors import NeighborsResults
    from sklearn.neighbors import NearestNeighbors

    dist, idx = NearestNeighbors(n_neighbors=90).fit(emb).kneighbors(emb)
    return float(scib_metrics.ilisi_knn(NeighborsResults(indices=idx, distances=dist),
                                        adata.obs["batch"].cat.codes.to_numpy()))


@pytest.mark.slow  # 1 thread, seed 0 on a busy CPU: port 83 s, scvi-tools 192 s, paper code 146 s (~15 min in all)
@pytest.mark.skipif(os.environ.get("SCINT_FIDELITY_TESTS") != "1",
                    reason="~15 min on 2 cores: run with SCINT_FIDELITY_TESTS=1")
def test_port_mixes_like_scvi_tools_when_set_as_scvi_tools():
    """On Splatter common-3 (the default study's sim_common3: 1,069 cells, 1,000 HVGs, 4 of 7 cell
    types in one system only) scvi-tools' SysVI mixes the systems and the paper code does not.
    Set as scvi-tools, the port mixes as scvi-tools does, within seed noise: over 3 seeds the two
    mean iLISIs do not differ at the 5 % level (Welch's t test), and the paper-code port (one seed)
    stays far below both means, so the test fails if the options change nothing.
    Measured (200 epochs, 1 thread): port set as scvi-tools, seeds 0-2: 0.41 / 0.23 / 0.01 (mean
    0.21), scvi-tools 0.53 / 0.45 / 0.42 (mean 0.47), paper code 0.00; Welch p = 0.15 (2.1 standard
    errors). Over more seeds (port 0-2 and 5-7: mean 0.28, sd 0.17; scvi-tools 0-6: mean 0.40, sd
    0.09) they are 1.6 standard errors apart (p = 0.16). What is left is random draws only: one
    minibatch gives scvi-tools' loss terms and gradients
    (test_port_set_as_scvi_tools_computes_scvi_tools_loss_and_gradients), and over 200 steps on the
    same minibatches and noise both trainings agree until float rounding grows, as it does between
    two runs of the port itself. Three seeds resolve only large differences (the gap before the KL
    ordering was named, 0.30 vs 0.47 on seeds 0-2, was p = 0.09)."""
    from datasets.preprocess import preprocess
    from datasets.simulate import simulate
    from methods import sysvi_scvitools

    raw = simulate("common-3", seed=1, n_cells=1900, n_genes=10000)
    data = preprocess(raw, name="sim_common3", batch_key="batch", label_key="celltype", n_hvg=1000)
    port, ref = [], []
    for seed in MIX_SEEDS:
        port.append(scaled_ilisi(run("sysvi", data, seed, max_epochs=MIX_EPOCHS, **AS_SCVI_TOOLS).embedding, data))
        params = registry.merge_params("sysvi_scvitools", {"max_epochs": MIX_EPOCHS})
        ref.append(scaled_ilisi(sysvi_scvitools.integrate(data, batch_key="batch", label_key="label", params=params,
                                                          seed=seed, device="cpu").embedding, data))
    paper = scaled_ilisi(run("sysvi", data, 0, max_epochs=MIX_EPOCHS).embedding, data)
    from scipy.stats import ttest_ind

    assert ttest_ind(port, ref, equal_var=False).pvalue > 0.05, (port, ref)
    assert paper < min(np.mean(port), np.mean(ref)) - 0.1, (paper, port, ref)
