"""scaling.tsv (metrics.aggregate.scaling_table): the exponent is fitted on the method's own
integration time, and the job's start-up (wall-clock minus integration) is its own column."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pandas as pd
import pytest

from metrics.aggregate import scaling_table

STARTUP_S = 12.0  # imports + data loading: the same at every size


def write_scaling_run(root, method: str, n: int, integrate_s: float | None, status: str = "ok") -> str:
    run = root / "scaling" / "d" / method / f"n{n}" / "run.h5ad"
    run.parent.mkdir(parents=True)
    rec = {"status": status, "error": "" if status == "ok" else "out of memory", "device": "cpu",
           "integrate_s": integrate_s, "peak_rss_mb": 100.0, "peak_gpu_mb": None}
    with h5py.File(run, "w") as f:
        f.create_group("uns").create_dataset("run_json", data=json.dumps(rec))
    bench = root / "benchmarks" / "d" / method / f"n{n}.tsv"
    bench.parent.mkdir(parents=True, exist_ok=True)
    wall = STARTUP_S + (integrate_s or 0.0)
    pd.DataFrame({"s": [wall], "max_rss": [200.0 + n / 100]}).to_csv(bench, sep="\t", index=False)
    return str(run)


def test_exponent_on_integration_time_and_start_up_apart(tmp_path):
    sizes = [1000, 3000, 10000, 30000]
    runs = [write_scaling_run(tmp_path, "cvae", n, 1e-3 * n) for n in sizes]  # linear in cells
    runs.append(write_scaling_run(tmp_path, "harmony", 1000, 0.5))
    runs.append(write_scaling_run(tmp_path, "harmony", 10000, None, status="failed"))
    df = scaling_table(runs, str(tmp_path / "benchmarks"), "d")
    cvae = df[df["method"] == "cvae"]
    assert cvae["exponent_s"].iloc[0] == pytest.approx(1.0, abs=1e-6)
    # the job wall-clock is dominated by start-up on small data: its slope is much flatter
    assert cvae["exponent_wall_s"].iloc[0] < 0.8
    np.testing.assert_allclose(cvae["startup_s"], STARTUP_S)
    harmony = df[df["method"] == "harmony"].set_index("n_cells")
    assert harmony.at[10000, "status"] == "failed" and np.isnan(harmony.at[10000, "startup_s"])
    assert np.isnan(harmony.at[1000, "exponent_s"])  # one successful size: no slope
