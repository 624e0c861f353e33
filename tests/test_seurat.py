"""Seurat v4 CCA / RPCA via Rscript: contract, batch mixing, errors. Skipped without R+Seurat."""

from __future__ import annotations

import shutil
import subprocess

import numpy as np
import pytest

from methods.base import ParamError

try:  # the shared small-data helpers live beside this file
    from test_baselines import ilisi, knn_of, label_agreement, make_batch_data, run_method
except ImportError:  # tests/ imported as a package
    from tests.test_baselines import ilisi, knn_of, label_agreement, make_batch_data, run_method


def _has_seurat() -> bool:
    rscript = shutil.which("Rscript")
    if not rscript:
        return False
    probe = subprocess.run([rscript, "-e", "quit(status = !requireNamespace('Seurat', quietly = TRUE))"],
                           capture_output=True)
    return probe.returncode == 0


needs_seurat = pytest.mark.skipif(not _has_seurat(), reason="Rscript with Seurat not installed")


@pytest.fixture(scope="module")
def data():
    return make_batch_data(n_per_batch=150, n_genes=150)


@pytest.mark.seurat
@needs_seurat
@pytest.mark.parametrize("method", ["seurat_cca", "seurat_rpca"])
def test_seurat_mixes_batches_and_keeps_types(data, method):
    res = run_method(method, data, k_anchor=5, n_pcs=20, dims=15)
    assert res.embedding.shape == (data.n_obs, 20) and res.embedding.dtype == np.float32
    # k_filter (default 200) is lowered below the 150-cell batches; k_weight never exceeds 100.
    assert res.extra["k_filter_used"] == 149 and 1 <= res.extra["k_weight_used"] <= 100
    assert res.extra["n_anchors"] > 0
    before = ilisi(knn_of(data.obsm["X_pca"]), data.obs["batch"])
    assert ilisi(knn_of(res.embedding), data.obs["batch"]) > before + 0.2
    # Rows come back in input order (cells are interleaved by batch in the test data).
    assert label_agreement(res.embedding, data.obs["label"]) > 0.8


@pytest.mark.slow
@pytest.mark.seurat
@needs_seurat
def test_seurat_caps_k_weight_for_small_batches():
    small = make_batch_data(n_per_batch=60, n_genes=120, seed=2)
    res = run_method("seurat_cca", small, k_anchor=5, n_pcs=10, dims=10)
    assert res.extra["k_weight_used"] <= 59 and res.embedding.shape == (small.n_obs, 10)


def test_seurat_missing_rscript_is_a_clear_error(monkeypatch, data):
    monkeypatch.setenv("RSCRIPT", "/nonexistent/Rscript")
    with pytest.raises(RuntimeError, match="Rscript not found"):
        run_method("seurat_cca", data)


def test_seurat_killed_rscript_names_the_signal(monkeypatch, tmp_path, data):
    """An Rscript SIGKILLed (the kernel's OOM killer, e.g. RPCA at 100k cells on 24 GB) says so."""
    fake = tmp_path / "Rscript"
    fake.write_text("#!/bin/sh\nkill -9 $$\n")
    fake.chmod(0o755)
    monkeypatch.setenv("RSCRIPT", str(fake))
    with pytest.raises(RuntimeError, match=r"killed by signal 9 \(SIGKILL: most often out of memory\)"):
        run_method("seurat_rpca", data)


def test_seurat_rejects_bad_reduction(data):
    with pytest.raises(ParamError, match="reduction"):
        run_method("seurat_cca", data, reduction="mnn")


def test_seurat_effective_k():
    from methods.seurat import effective_k

    assert effective_k({"k_weight": 100, "k_filter": 200}, 50) == {"k_weight": 49, "k_filter": 49}
    assert effective_k({"k_weight": 100, "k_filter": 200}, 5000) == {"k_weight": 100, "k_filter": 200}
