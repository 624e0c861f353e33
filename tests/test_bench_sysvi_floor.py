"""benchmarks/bench_sysvi_floor.py runs end to end at a tiny size and times what it says it times."""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))

import bench_sysvi_floor  # noqa: E402


def test_floor_benchmark_times_every_product_of_a_step(tmp_path):
    out = tmp_path / "floor.tsv"
    bench_sysvi_floor.main(["--n-cells", "400", "--threads", "1", "--epochs", "1", "--repeats", "1", "--out", str(out)])
    row = pd.read_csv(out, sep="\t").iloc[0]
    # sysVI's defaults, forward + weight gradient + input gradient per linear layer call: the main
    # pass's 7 layers (its input layer needs no input gradient), the cycle pass's 7 (its variance
    # head's output is unused: no backward) and the VampPrior's 4 (the pseudo-inputs are trained)
    assert row["products_per_step"] == (2 + 6 * 3) + (6 * 3 + 1) + 4 * 3 == 51
    assert row["steps_per_epoch"] == 3  # 360 training cells in minibatches of 128
    for part in ("matmul_warm", "matmul_cold", "fixed_cost", "epoch"):
        assert row[f"{part}_s_per_epoch"] > 0
    assert row["thread_sensitivity_max_abs"] >= 0 and row["embedding_sd"] > 0
