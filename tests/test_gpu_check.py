"""The prepared GPU check (benchmarks/gpu_check.sh) at CI size on the CPU: it runs end to end and
its JSON names every model, precision, size and metric it would time on a GPU, each with status ok,
so the check cannot rot between the rare sessions that have a GPU."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from metrics.catalog import metric_info

REPO = Path(__file__).resolve().parent.parent
MODELS = {("sysvi", "fp32"), ("sysvi", "bf16-mixed"), ("sccraft", "fp32"), ("scdreamer", "fp32"),
          ("davae", "fp32"), ("scvi", "fp32"), ("sysvi_scvitools", "fp32"), ("sysvi_scvitools", "bf16-mixed")}


@pytest.fixture(scope="module")
def check(tmp_path_factory):
    out = tmp_path_factory.mktemp("gpu_check")
    env = {**os.environ, "BENCH_PROGRESS": "0", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    env.pop("OUT", None)
    # a budget no slow CI machine reaches: every item must run (the guard is tested below)
    cmd = ["bash", "benchmarks/gpu_check.sh", "--device", "cpu", "--cells", "2000", "--out", str(out), "--budget-s", "3000"]
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=1200)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return json.loads((out / "gpu_check.json").read_text()), (out / "gpu_check.md").read_text()


def test_every_model_is_timed_at_each_precision(check):
    result, table = check
    rows = result["models"]
    assert {(r["model"], r["precision"]) for r in rows} == MODELS
    for r in rows:
        assert r["status"] == "ok", r
        assert r["n_cells"] == 2000 and r["s_per_epoch"] > 0 and 0 < r["timed_steps"] <= r["steps_per_epoch"]
        assert r["peak_gpu_mb"] is None  # CPU run
        assert f"| {r['model']} | 2000 | {r['precision']} |" in table
    assert result["target"]["met"] == dict.fromkeys(["sysvi", "sccraft", "scdreamer", "davae"])  # no 1M cells


def test_each_proposed_model_runs_through_the_runner(check):
    result, _ = check
    assert [r["model"] for r in result["integrate"]] == ["sysvi", "sccraft", "scdreamer", "davae"]
    for r in result["integrate"]:
        assert r["status"] == "ok", r
        assert r["device"] == "cpu" and r["peak_gpu_mb"] is None


def test_every_metric_is_scored_and_timed(check):
    result, table = check
    assert result["metrics_summary"]["status"] == "ok"
    assert result["metrics_summary"]["jax_backend"] == "cpu"
    assert {r["metric"] for r in result["metrics"]} == set(metric_info())
    for r in result["metrics"]:
        assert r["status"] == "ok", r
        assert f"| {r['metric']} |" in table


def test_items_past_the_budget_are_skipped_not_run():
    """With no time left every item is recorded as skipped (a 100M-cell item would not finish)."""
    import torch

    sys.path.insert(0, str(REPO / "benchmarks"))
    import gpu_check

    args = argparse.Namespace(cells=[100_000_000], max_steps=1, warmup_steps=1)
    rows = gpu_check.model_rows(args, torch.device("cpu"), gpu_check.Clock(0.0), {})
    assert len(rows) == 8 and {r["status"] for r in rows} == {gpu_check.SKIPPED_TIME}
