"""iMAP (PyPI imap 1.0.0) wrapper: output contract, determinism, batch mixing, parameter checks.

Data: ``sim_small`` (conftest: ~590 cells x 500 HVGs, 2 batches, 7 cell types). Epochs are cut
hard (iMAP's defaults, 150 + 150 epochs of 10240 draws, take over an hour on one CPU thread);
batch mixing is scaled iLISI on a 90-NN graph of the output, as in tests/test_baselines.py.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from test_baselines import ilisi, knn_of, label_agreement, run_method  # noqa: E402

from methods import registry  # noqa: E402
from methods.base import ParamError  # noqa: E402

pytest.importorskip("imap")

SHORT = {"stage1_epochs": 5, "stage2_epochs": 60, "epoch_samples": 256, "n_comps": 20}
TINY = {"stage1_epochs": 1, "stage2_epochs": 2, "epoch_samples": 64, "n_comps": 10}


@pytest.fixture(autouse=True)
def _one_thread():
    import torch

    torch.set_num_threads(1)


@pytest.fixture(scope="module")
def short_run(sim_small):
    return run_method("imap", sim_small, seed=0, **SHORT)


def test_registry_entry():
    spec = registry.get("imap")
    assert (spec.output, spec.input, spec.env, spec.gpu) == ("corrected", "lognorm", "imap", True)
    # iMAP's own defaults (iMAP_fast / integrate_data signatures).
    d = spec.defaults
    assert (d["stage1_epochs"], d["stage2_epochs"], d["epoch_samples"]) == (150, 150, 10240)
    assert (d["lr"], d["lambda_co"], d["lambda_rc"], d["latent_dim"]) == (5e-4, 3.0, 1.0, 256)
    assert (d["inc"], d["metric"], d["k1"], d["k2"], d["n_sample"]) == (False, "angular", None, None, 3000)


def test_output_contract(sim_small, short_run):
    res = short_run
    assert res.corrected.shape == sim_small.shape and res.corrected.dtype == np.float32
    assert np.isfinite(res.corrected).all() and (res.corrected >= 0).all()  # iMAP ends in a ReLU
    assert res.embedding.shape == (sim_small.n_obs, 20) and np.isfinite(res.embedding).all()
    assert len(res.loss_history["stage1_reconstruction"]) == 5
    assert len(res.loss_history["stage2_generator"]) == 60  # one query batch
    assert res.epochs == 65 and res.extra["device"] == "cpu"
    # Rows are in input order: iMAP leaves its anchor batch untouched, the query batch is moved.
    anchor = res.extra["merge_order"].split("<-")[0]
    batches = sim_small.obs["batch"].astype(str).to_numpy()
    X = sim_small.X.toarray()
    np.testing.assert_array_equal(res.corrected[batches == anchor], X[batches == anchor])
    assert not np.allclose(res.corrected[batches != anchor], X[batches != anchor])


def test_mixes_batches_and_keeps_cell_types(sim_small, short_run):
    before = ilisi(knn_of(sim_small.obsm["X_pca"]), sim_small.obs["batch"])
    after = ilisi(knn_of(short_run.embedding), sim_small.obs["batch"])
    assert after > before + 0.1, (before, after)
    assert label_agreement(short_run.embedding, sim_small.obs["label"]) > 0.6
    # Per-gene batch means move closer together.
    batches = sim_small.obs["batch"].astype(str).to_numpy()
    X, C = sim_small.X.toarray(), short_run.corrected
    b1, b2 = np.unique(batches)
    gap = lambda M: np.abs(M[batches == b1].mean(0) - M[batches == b2].mean(0)).mean()  # noqa: E731
    assert gap(C) < 0.8 * gap(X)


def test_deterministic_under_a_seed_and_leaves_imap_unpatched(sim_small):
    import imap.stage1
    import imap.stage2
    import torch

    is_available = torch.cuda.is_available
    a = run_method("imap", sim_small, seed=3, **TINY)
    b = run_method("imap", sim_small, seed=3, **TINY)
    np.testing.assert_array_equal(a.corrected, b.corrected)
    np.testing.assert_array_equal(a.embedding, b.embedding)
    c = run_method("imap", sim_small, seed=4, **TINY)
    assert not np.allclose(a.corrected, c.corrected)
    # The numpy-2 shim, the epoch length and the device switch are undone after the call.
    assert "bool8" not in np.__dict__
    assert len(imap.stage1.ScDataset()) == len(imap.stage2.ScDataset()) == 10240
    assert torch.cuda.is_available is is_available


@pytest.mark.parametrize("bad, name", [
    ({"stage1_epochs": 0}, "stage1_epochs"),
    ({"stage2_epochs": 1.5}, "stage2_epochs"),
    ({"epoch_samples": 100}, "epoch_samples"),
    ({"lr": 0}, "lr"),
    ({"lambda_co": -1}, "lambda_co"),
    ({"metric": "cosine"}, "metric"),
    ({"inc": "yes"}, "inc"),
    ({"k1": 2}, "k1"),
    ({"n_comps": 1}, "n_comps"),
])
def test_bad_params_name_the_parameter(sim_small, bad, name):
    with pytest.raises(ParamError, match=name):
        run_method("imap", sim_small, **{**TINY, **bad})


def test_small_batch_needs_explicit_k(sim_small):
    # 75 cells per batch: iMAP's automatic k2 (cells / 100) would be 0.
    batches = sim_small.obs["batch"].astype(str).to_numpy()
    keep = np.concatenate([np.flatnonzero(batches == b)[:75] for b in np.unique(batches)])
    small = sim_small[np.sort(keep)].copy()
    with pytest.raises(ParamError, match="k1 and k2"):
        run_method("imap", small, **TINY)
    res = run_method("imap", small, k1=1, k2=2, **TINY)
    assert res.corrected.shape == small.shape


def test_parse_losses():
    from methods.imap import parse_losses

    lines = ["Step 1: Calibrating Celltype...",
             "[Epoch 1/2] [Reconstruction loss: 0.5] [Cotent loss: 0.25]",
             "[Epoch 1/1] [D loss: -2.0] [G loss: nan]"]
    hist = parse_losses(lines)
    assert hist["stage1_reconstruction"] == [0.5] and hist["stage1_content"] == [0.25]
    assert hist["stage2_discriminator"] == [-2.0] and np.isnan(hist["stage2_generator"][0])
