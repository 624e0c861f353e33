"""Same seed, same result on CPU: the tiny study run twice gives the same tables and embeddings,
and every run records package versions, device and the git commit of the workflow.

The first run is the session's tiny study from tests/test_e2e.py; the second one goes up to
``tables/best.tsv`` (data, runs, metrics and selection all recomputed from scratch; the report
and scaling study add nothing to compare).
"""

from __future__ import annotations

import re
import subprocess

import anndata as ad
import numpy as np
import pandas as pd
import pytest
from test_e2e import (
    CONFIGS,
    REPO,
    log_tail,
    read_tsv,
    run_record,
    run_snakemake,
    tiny_study,
    write_study_config,
)

pytestmark = pytest.mark.slow

KEYS = ["dataset", "method", "setting", "seed"]
TOLERANCE = 1e-6


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    first = tiny_study(tmp_path_factory)
    workdir = tmp_path_factory.mktemp("study_tiny_again")
    write_study_config(CONFIGS / "tiny.yaml", workdir)
    res = run_snakemake(workdir, str(workdir / "out/tables/best.tsv"))
    assert res.returncode == 0, log_tail(res)
    return first, workdir / "out"


def assert_same_table(a: pd.DataFrame, b: pd.DataFrame, keys: list[str], name: str) -> None:
    """Same rows and columns; numbers equal within TOLERANCE, everything else exactly."""
    assert list(a.columns) == list(b.columns), name
    a, b = a.sort_values(keys).reset_index(drop=True), b.sort_values(keys).reset_index(drop=True)
    assert len(a) == len(b) and len(a) > 0, name
    for col in a.columns:
        if pd.api.types.is_numeric_dtype(a[col]) and pd.api.types.is_numeric_dtype(b[col]):
            x, y = a[col].to_numpy(float), b[col].to_numpy(float)
            assert np.array_equal(np.isnan(x), np.isnan(y)), f"{name}.{col}: NaN pattern differs"
            diff = np.nanmax(np.abs(x - y), initial=0.0)
            assert diff <= TOLERANCE, f"{name}.{col}: differs by {diff}"
        else:
            assert (a[col].fillna("") == b[col].fillna("")).all(), f"{name}.{col} differs"


def test_metrics_scores_and_best_are_identical(two_runs):
    first, second = two_runs
    metrics_a, metrics_b = read_tsv(first, "metrics.tsv"), read_tsv(second, "metrics.tsv")
    assert_same_table(metrics_a, metrics_b, KEYS + ["metric"], "metrics.tsv")
    assert_same_table(read_tsv(first, "scores.tsv"), read_tsv(second, "scores.tsv"), KEYS, "scores.tsv")
    best_a, best_b = read_tsv(first, "best.tsv"), read_tsv(second, "best.tsv")
    for best, out in ((best_a, first), (best_b, second)):  # the study folder differs, nothing else may
        best["representative_run"] = best["representative_run"].str.replace(str(out), "OUT", regex=False)
    assert_same_table(best_a, best_b, ["dataset", "method"], "best.tsv")


def test_embeddings_are_identical(two_runs):
    first, second = two_runs
    runs = sorted(first.glob("runs/*/*/*/seed*/run.h5ad"))
    assert len(runs) == 16
    for path in runs:
        twin = second / path.relative_to(first)
        emb_a, emb_b = ad.read_h5ad(path).obsm["X_emb"], ad.read_h5ad(twin).obsm["X_emb"]
        assert emb_a.shape == emb_b.shape and np.abs(emb_a - emb_b).max() <= TOLERANCE, path


def test_different_seeds_differ_where_the_method_is_stochastic(two_runs):
    """Guards the comparison above: harmony's seeds give different embeddings (it is not a no-op)."""
    first, _ = two_runs
    seed0 = ad.read_h5ad(first / "runs/sim_base/harmony/theta-2/seed0/run.h5ad").obsm["X_emb"]
    seed1 = ad.read_h5ad(first / "runs/sim_base/harmony/theta-2/seed1/run.h5ad").obsm["X_emb"]
    assert np.abs(seed0 - seed1).max() > TOLERANCE


def test_every_run_records_versions_device_and_commit(two_runs):
    first, _ = two_runs
    runs = read_tsv(first, "runs.tsv")
    assert len(runs) == 16
    for path in runs["run_path"]:
        rec = run_record(path)
        assert {"python", "numpy", "scipy", "anndata", "scanpy", "harmonypy"} <= set(rec["versions"]), path
        assert all(isinstance(v, str) and v for v in rec["versions"].values())
        assert rec["device"] == "cpu"
        sha = rec["git_commit"].removesuffix("-dirty")  # a commit of this repo (HEAD may have moved on since)
        assert re.fullmatch(r"[0-9a-f]{40}", sha), rec["git_commit"]
        assert subprocess.run(["git", "-C", str(REPO), "cat-file", "-e", f"{sha}^{{commit}}"]).returncode == 0
        assert rec["seed"] in (0, 1) and rec["started_at"] and rec["wall_s"] > 0
