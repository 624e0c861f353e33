"""The runner records every run, successful or not, and never leaves a half-written file."""

import json
import os
import sys
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest

from methods import registry
from methods.registry import MethodSpec
from methods.runner import hide_labels, read_run_info, run


@pytest.fixture
def fake_registry(monkeypatch):
    for name, supervised in [("fake", False), ("fake_sup", True)]:
        monkeypatch.setitem(registry.METHODS, name, MethodSpec(
            "fake_methods", "embedding", "lognorm", "harmony", supervised=supervised,
            defaults={"mode": "ok"}))


@pytest.fixture
def data_path(tmp_path):
    rng = np.random.default_rng(0)
    n = 60
    a = ad.AnnData(rng.poisson(1.0, size=(n, 20)).astype(np.float32))
    a.obs_names = [f"c{i}" for i in range(n)]
    a.obs["batch"] = pd.Categorical(np.repeat(["b1", "b2"], n // 2))
    a.obs["label"] = pd.Categorical(np.tile(["t1", "t2", "t3"], n // 3))
    a.obsm["X_pca"] = rng.normal(size=(n, 5)).astype(np.float32)
    path = tmp_path / "data.h5ad"
    a.write_h5ad(path)
    return path


def _run(data_path, tmp_path, method="fake", mode="ok", **kw):
    out = tmp_path / "runs" / "run.h5ad"
    info = run(str(data_path), str(out), method, "default", {"mode": mode}, seed=1, **kw)
    return out, info


def test_ok_run_records_everything(fake_registry, data_path, tmp_path):
    out, info = _run(data_path, tmp_path)
    assert info["status"] == "ok"
    rec = read_run_info(out)
    assert rec["method"] == "fake" and rec["seed"] == 1 and rec["device"] == "cpu"
    assert rec["loss_history"]["loss"] == [3.0, 2.0, 1.0]
    assert rec["peak_rss_mb"] > 10 and rec["wall_s"] > 0
    assert {"numpy", "anndata", "python"} <= set(rec["versions"])
    assert rec["git_commit"]
    run_ad = ad.read_h5ad(out)
    assert run_ad.obsm["X_emb"].shape == (60, 3)
    assert list(run_ad.obs["batch"].unique()) == ["b1", "b2"]
    assert not list(out.parent.glob(".*tmp*"))
    # a trained run records its embedding's per-dimension spread (the latent-scale diagnostic)
    assert rec["latent_sd"] == pytest.approx(run_ad.obsm["X_emb"].std(axis=0), abs=1e-4)
    assert rec["base_setting"] == "default"


def test_untrained_run_records_no_latent_spread(fake_registry, data_path, tmp_path):
    out, info = _run(data_path, tmp_path, mode="untrained")
    assert info["status"] == "ok" and "latent_sd" not in read_run_info(out)


@pytest.mark.parametrize("mode,needle", [
    ("raise", "deliberate failure"),
    ("nan", "non-finite loss"),
    ("nan_output", "NaN"),
    ("kill", "SIGKILL"),
])
def test_failures_are_recorded_not_dropped(fake_registry, data_path, tmp_path, mode, needle):
    out, info = _run(data_path, tmp_path, mode=mode)
    assert info["status"] == "failed"
    assert needle in info["error"]
    rec = read_run_info(out)  # the failed run still has its file, with the error
    assert rec["status"] == "failed" and needle in rec["error"]


def test_memory_limit_is_recorded_as_failed(fake_registry, data_path, tmp_path):
    out, info = _run(data_path, tmp_path, mode="memory", max_mem_mb=1500)
    assert info["status"] == "failed"
    assert "out of memory" in info["error"]


def test_strict_makes_failure_fatal(fake_registry, data_path, tmp_path):
    with pytest.raises(SystemExit, match="deliberate failure"):
        _run(data_path, tmp_path, mode="raise", strict=True)


def test_unknown_method_and_parameter_are_named(fake_registry, data_path, tmp_path):
    _, info = _run(data_path, tmp_path, method="no_such_method")
    assert info["status"] == "failed" and "no_such_method" in info["error"]
    out = tmp_path / "r2" / "run.h5ad"
    info = run(str(data_path), str(out), "fake", "default", {"learning_rat": 1}, seed=0)
    assert info["status"] == "failed" and "learning_rat" in info["error"]


def test_hidden_labels_are_stratified_and_seeded():
    labels = np.array(["a"] * 50 + ["b"] * 10 + ["c"])
    h1, h2 = hide_labels(labels, 0.5, seed=3), hide_labels(labels, 0.5, seed=3)
    assert (h1 == h2).all()
    assert h1[:50].sum() == 25 and h1[50:60].sum() == 5 and not h1[60]
    assert not (hide_labels(labels, 0.5, seed=4) == h1).all()


def test_supervised_run_sees_hidden_labels_and_keeps_truth(fake_registry, data_path, tmp_path):
    out, info = _run(data_path, tmp_path, method="fake_sup", label_missing=0.5)
    assert info["status"] == "ok"
    run_ad = ad.read_h5ad(out)
    hidden = run_ad.obs["label_hidden"].to_numpy()
    assert hidden.sum() == 30
    # the method saw NaN for hidden cells; the run file keeps the true labels for scoring
    assert (run_ad.obs["predicted_label"].astype(str)[hidden] == "nan").all()
    assert run_ad.obs["label"].notna().all()
    assert json.loads(ad.read_h5ad(out).uns["run_json"])["label_missing"] == 0.5
    # the fully labelled setting it was made from is recorded, so no later stage parses names
    out = tmp_path / "hidden" / "run.h5ad"
    run(str(data_path), str(out), "fake_sup", "lr-0.1__label_missing-0.5", {"mode": "ok"}, seed=1,
        label_missing=0.5)
    assert read_run_info(out)["base_setting"] == "lr-0.1"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="VmHWM is Linux procfs")
def test_peak_rss_is_the_process_own_not_its_parents():
    """Linux carries ru_maxrss over fork+exec: a child of a large parent would report the
    parent's peak. peak_rss_mb reads VmHWM, this process's own high-water mark."""
    import resource
    import subprocess

    from methods.base import peak_rss_mb

    big = np.ones(400 * 2**20 // 8)  # 400 MiB resident in this (parent) process
    big += 1
    code = ("import resource; from methods.base import peak_rss_mb; "
            "print(peak_rss_mb(), resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=str(Path(__file__).resolve().parent.parent)).stdout.split()
    own, inherited = float(out[0]), float(out[1])
    assert inherited > 400 and own < 300, (own, inherited)  # the child itself is a small python
    assert peak_rss_mb() >= 400  # the parent's own peak includes the array
    assert peak_rss_mb(include_children=True) >= peak_rss_mb()
    assert resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024 > 400


def test_gpu_check_does_not_initialise_cuda_before_the_fork(monkeypatch):
    """The method runs in a forked child: the parent's GPU check must be torch's NVML-based one
    (``PYTORCH_NVML_BASED_CUDA_CHECK``), since the default one initialises CUDA and the child's first
    CUDA call then fails ("Cannot re-initialize CUDA in forked subprocess")."""
    import torch

    from methods import runner

    monkeypatch.delenv("PYTORCH_NVML_BASED_CUDA_CHECK", raising=False)
    seen = []
    monkeypatch.setattr(torch.cuda, "is_available",
                        lambda: seen.append(os.environ.get("PYTORCH_NVML_BASED_CUDA_CHECK")) or True)
    assert runner.resolve_device("auto", gpu_method=True) == "cuda"
    assert runner.resolve_device("cuda", gpu_method=True) == "cuda"
    assert seen and set(seen) == {"1"}
