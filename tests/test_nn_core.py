"""Tests of the shared torch core (methods/nn): layers, likelihoods, VampPrior, training helpers."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from methods.base import TrainingDivergedError
from methods.nn import layers as layers_mod
from methods.nn import likelihoods as L
from methods.nn import training as T
from methods.nn.layers import MLP, GradientReversal, Linear, grad_reverse
from methods.nn.vamp_prior import VampPrior, init_from_cells

torch.set_num_threads(1)


def test_mlp_injects_covariates_where_asked():
    torch.manual_seed(0)
    x, cov = torch.randn(8, 5), torch.eye(2)[torch.arange(8) % 2]
    all_ = MLP(5, [4, 3], 2, n_cov=2, inject_cov="all")
    first = MLP(5, [4, 3], 2, n_cov=2, inject_cov="first")
    assert [lay[0].in_features for lay in all_.layers] == [7, 6] and all_.out.in_features == 5
    assert [lay[0].in_features for lay in first.layers] == [7, 4] and first.out.in_features == 3
    all_.eval()
    out_a = all_(x, cov)
    out_b = all_(x, 1 - cov)
    assert out_a.shape == (8, 2) and not torch.allclose(out_a, out_b)  # covariates change the output
    with pytest.raises(ValueError, match="covariates of width 2"):
        all_(x)


def test_mlp_options_and_bad_values():
    m = MLP(3, [4], None, norm="batch_no_scale", activation="leaky_relu", dropout=0.2,
            out_activation="softplus")
    assert m.n_out == 4 and (m(torch.randn(6, 3)) >= 0).all()
    bn = m.layers[0][1]
    assert not bn.bn.affine and bn.bias.requires_grad  # shift learned, scale fixed
    with pytest.raises(ValueError, match="norm 'group'"):
        MLP(3, [4], norm="group")
    with pytest.raises(ValueError, match="dropout"):
        MLP(3, [4], dropout=1.5)


@pytest.mark.skipif(not layers_mod.ONEDNN_LINEAR, reason="torch built without oneDNN")
@pytest.mark.parametrize("bias", [True, False])
def test_onednn_linear_matches_torch_linear_and_its_gradients(bias):
    torch.manual_seed(0)
    lin = Linear(37, 19, bias=bias)
    x = torch.randn(11, 37, requires_grad=True)
    y = lin(x)
    assert y.grad_fn.__class__.__name__.startswith("_OneDNNLinear")  # the oneDNN path was taken
    ref = torch.nn.functional.linear(x.double(), lin.weight.double(), None if lin.bias is None else lin.bias.double())
    assert torch.allclose(y.double(), ref, atol=1e-5)
    g = torch.randn(11, 19)
    y.backward(g)
    grads = [x.grad, lin.weight.grad] + ([lin.bias.grad] if bias else [])
    x.grad, lin.weight.grad = None, None
    if bias:
        lin.bias.grad = None
    torch.nn.functional.linear(x, lin.weight, lin.bias).backward(g)  # torch's own formula
    for ours, theirs in zip(grads, [x.grad, lin.weight.grad] + ([lin.bias.grad] if bias else [])):
        assert torch.allclose(ours, theirs, atol=1e-5)
    with torch.no_grad():  # no graph: plain forward, same values
        assert torch.allclose(lin(x), y, atol=1e-6)
    with torch.autocast("cpu", dtype=torch.bfloat16):  # autocast keeps torch's bf16 linear
        assert lin(x).dtype == torch.bfloat16


def test_gradient_reversal_flips_and_scales_gradient():
    x = torch.ones(3, requires_grad=True)
    (grad_reverse(x, 2.0) * torch.tensor([1.0, 2.0, 3.0])).sum().backward()
    assert torch.allclose(x.grad, torch.tensor([-2.0, -4.0, -6.0]))
    y = torch.ones(2, requires_grad=True)
    out = GradientReversal(1.0)(y)
    assert torch.equal(out, y)
    out.sum().backward()
    assert torch.equal(y.grad, -torch.ones(2))


def test_likelihoods_match_torch_distributions():
    torch.manual_seed(0)
    x = torch.poisson(torch.rand(4, 6) * 5)
    mu, theta = torch.rand(4, 6) * 5 + 0.1, torch.rand(4, 6) * 3 + 0.5
    probs = mu / (mu + theta)  # torch NB: total_count=theta, probs of a "success" = mu/(mu+theta)
    ref = -torch.distributions.NegativeBinomial(total_count=theta, probs=probs).log_prob(x).sum(-1)
    assert torch.allclose(L.nb_nll(x, mu, theta, eps=0.0), ref, atol=1e-4)
    # ZINB with pi -> 0 is NB; with large pi the zeros become cheap
    assert torch.allclose(L.zinb_nll(x, mu, theta, torch.full_like(x, -30.0), eps=0.0), ref, atol=1e-3)
    zeros = torch.zeros(1, 3)
    assert (L.zinb_nll(zeros, mu[:1, :3], theta[:1, :3], torch.full((1, 3), 5.0))
            < L.nb_nll(zeros, mu[:1, :3], theta[:1, :3])).all()
    mean, var = torch.randn(4, 6), torch.rand(4, 6) + 0.1
    gref = -torch.distributions.Normal(mean, var.sqrt()).log_prob(x).sum(-1) - 6 * 0.5 * math.log(2 * math.pi)
    assert torch.allclose(L.gaussian_nll(x, mean, var), gref, atol=1e-4)


def test_kl_terms_match_torch():
    torch.manual_seed(1)
    mq, vq, mp, vp = torch.randn(5, 3), torch.rand(5, 3) + 0.1, torch.randn(5, 3), torch.rand(5, 3) + 0.1
    kl = torch.distributions.kl_divergence
    ref = kl(torch.distributions.Normal(mq, vq.sqrt()), torch.distributions.Normal(mp, vp.sqrt())).sum(-1)
    assert torch.allclose(L.kl_normal_normal(mq, vq, mp, vp), ref, atol=1e-5)
    assert torch.allclose(L.kl_normal_standard(mq, vq),
                          L.kl_normal_normal(mq, vq, torch.zeros(5, 3), torch.ones(5, 3)), atol=1e-5)
    assert torch.allclose(L.kl_normal_standard(torch.zeros(2, 3), torch.ones(2, 3)), torch.zeros(2))


def test_vamp_prior_is_a_per_dimension_mixture():
    gen = torch.Generator().manual_seed(0)
    X, cov = torch.randn(20, 4), torch.eye(2)[torch.arange(20) % 2]
    u, u_cov = init_from_cells(X, cov, 3, gen)
    rows = [int(torch.nonzero((X == r).all(1))[0]) for r in u]  # pseudo-inputs are real cells
    assert torch.equal(u_cov, cov[rows])
    prior = VampPrior(3, u, u_cov, trainable=True, trainable_cov=False)
    assert prior.u.requires_grad and not prior.u_cov.requires_grad and prior.w.requires_grad

    def encode(x, c):  # fixed "encoder": mean = first 2 inputs, variance 0.5
        return x[:, :2], torch.full((x.shape[0], 2), 0.5)

    z = torch.randn(7, 2)
    lp = prior.log_prob(z, encode)
    comp = torch.distributions.Normal(u[:, :2], math.sqrt(0.5))  # K x d
    per_dim = torch.logsumexp(comp.log_prob(z[:, None, :]) + math.log(1 / 3), dim=1)  # n x d
    assert torch.allclose(lp, per_dim.sum(-1), atol=1e-5)
    lp.sum().backward()
    assert prior.u.grad is not None and prior.w.grad is not None
    with pytest.raises(ValueError, match="n_components"):
        init_from_cells(X, cov, 0, gen)


def test_seed_all_and_minibatches_are_reproducible():
    g1, g2 = T.seed_all(3), T.seed_all(3)
    a = T.minibatch_indices(10, 4, g1, "cpu")
    b = T.minibatch_indices(10, 4, g2, "cpu")
    assert [t.tolist() for t in a] == [t.tolist() for t in b]
    assert sorted(torch.cat(a).tolist()) == list(range(10)) and [t.numel() for t in a] == [4, 4, 2]
    assert [t.numel() for t in T.minibatch_indices(10, 4, g1, "cpu", drop_last=True)] == [4, 4]
    assert T.minibatch_indices(5, 2, g1, "cpu", shuffle=False)[0].tolist() == [0, 1]


def test_balanced_indices_sample_each_group_equally():
    codes = np.array([0] * 50 + [1] * 3)
    idx = T.balanced_indices(codes, 10, torch.Generator().manual_seed(0), "cpu")
    picked = codes[idx.numpy()]
    assert (picked == 0).sum() == 10 and (picked == 1).sum() == 10  # small group drawn with replacement
    assert len(set(idx[picked == 0].tolist())) == 10  # large group without replacement


def test_device_tensor_one_hot_and_device_choice():
    dense = np.arange(12, dtype=np.float64).reshape(4, 3)
    t = T.to_device_tensor(sp.csr_matrix(dense), "cpu", chunk_rows=3)
    assert t.dtype == torch.float32 and torch.equal(t, torch.tensor(dense, dtype=torch.float32))
    assert T.one_hot([0, 2], 3).tolist() == [[1, 0, 0], [0, 0, 1]]
    with pytest.raises(ValueError, match="codes must be in"):
        T.one_hot([3], 3)
    assert T.pick_device("cpu").type == "cpu"
    assert T.pick_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA"):
            T.pick_device("cuda")


def test_autocast_precisions(monkeypatch):
    lin = torch.nn.Linear(8, 4)
    x = torch.randn(3, 8)
    with T.autocast(torch.device("cpu"), "fp32"):
        assert lin(x).dtype == torch.float32
    monkeypatch.setattr(T, "cpu_has_native_bf16", lambda: True)
    with T.autocast(torch.device("cpu"), "bf16-mixed"):
        out = lin(x)
    assert out.dtype == torch.bfloat16 and lin.weight.dtype == torch.float32  # parameters stay fp32
    assert torch.allclose(out.float(), lin(x), rtol=0.02, atol=0.02)
    monkeypatch.setattr(T, "cpu_has_native_bf16", lambda: False)
    with pytest.warns(RuntimeWarning, match="emulated"):
        T.autocast(torch.device("cpu"), "bf16-mixed")
    with pytest.raises(ValueError, match="unknown precision 'fp16'"):
        T.autocast(torch.device("cpu"), "fp16")


def test_loss_history_and_nan_guard():
    hist = T.LossHistory()
    for v in (1.0, 3.0):
        hist.add("loss", torch.tensor(v))
    assert hist.end_epoch() == {"loss": 2.0}
    hist.add("loss", torch.tensor(5.0))
    hist.end_epoch()
    assert hist.as_dict() == {"loss": [2.0, 5.0]}
    T.check_finite({"loss": 1.0}, 1)
    with pytest.raises(TrainingDivergedError, match="non-finite kl at epoch 4"):
        T.check_finite({"loss": 1.0, "kl": torch.tensor(float("nan"))}, 4)


def test_encode_in_batches_uses_eval_mode_and_restores_training():
    torch.manual_seed(0)
    model = MLP(3, [5], 2, dropout=0.5)
    X = np.random.default_rng(0).normal(size=(10, 3)).astype(np.float32)
    model.train()
    out = T.encode_in_batches(model, X, None, batch_size=4)
    model.eval()
    with torch.no_grad():
        ref = model(torch.from_numpy(X)).numpy()
    assert isinstance(out, np.ndarray) and np.allclose(out, ref, atol=1e-6)  # dropout off, running stats
    model.train()
    T.encode_in_batches(model, X, None)
    assert model.training
    pair = T.encode_in_batches(lambda x, c: (x * 2, x.sum(1)), X, None, batch_size=3, device="cpu")
    assert pair[0].shape == (10, 3) and np.allclose(pair[1], X.sum(1), atol=1e-5)


def test_progress_is_silent_when_disabled(monkeypatch):
    monkeypatch.setenv("BENCH_PROGRESS", "0")
    items = [1, 2]
    assert T.progress(items, "x") is items
