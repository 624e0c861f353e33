"""Job requests from the data's size (methods/job_resources.py): they cover the README's own
measurements, grow with cells, genes, epochs and the attempt; scoring jobs are packed by cells."""

from __future__ import annotations

import pytest

from methods import job_resources as jr

GB = 1000  # MB, as SLURM's --mem counts


# README.md "Benchmarks", 100k cells x 2000 HVGs, peak memory (GB), 1 thread
README_100K_PEAK_GB = {"harmony": 2.8, "scanorama": 11.3, "bbknn": 2.9, "combat": 12.2, "scvi": 4.1,
                       "scanvi": 4.8, "imap": 8.7, "seurat_rpca": 21.0}


@pytest.mark.parametrize("method,peak_gb", README_100K_PEAK_GB.items())
def test_first_attempt_covers_the_measured_peak_at_100k_cells(method, peak_gb):
    assert jr.integrate_mem_mb(method, 100_000, 2000) >= peak_gb * 1024


def test_scoring_request_covers_the_measured_500k_run():
    assert jr.metrics_mem_mb(500_000) >= 5.5 * 1024
    assert jr.metrics_runtime(500_000, n_runs=1) * 60 >= 957
    assert jr.metrics_runtime(100_000, n_runs=1) * 60 >= 128
    # a packed job pays the start-up once, then each run's time
    assert 10 * jr.metrics_runtime(100_000, n_runs=1) < jr.metrics_runtime(100_000, n_runs=20)


def test_requests_grow_with_cells_genes_and_attempt():
    small, large = jr.integrate_mem_mb("scanorama", 10_000, 2000), jr.integrate_mem_mb("scanorama", 500_000, 2000)
    assert large > 20 * small
    assert jr.integrate_mem_mb("scanorama", 100_000, 4000) > jr.integrate_mem_mb("scanorama", 100_000, 2000)
    first = jr.integrate_mem_mb("combat", 100_000, 2000)
    assert [jr.integrate_mem_mb("combat", 100_000, 2000, attempt=a) for a in (1, 2, 3)] == [first, 2 * first,
                                                                                          3 * first]
    assert jr.integrate_runtime("combat", 100_000, attempt=3) == 3 * jr.integrate_runtime("combat", 100_000)
    assert jr.integrate_mem_mb("harmony", 100, 50) == jr.MIN_MEM_MB  # tiny data: the floor


def test_deep_model_runtime_follows_the_epochs_it_will_run():
    short = jr.integrate_runtime("scdreamer", 100_000, {"epochs": 10})
    assert jr.integrate_runtime("scdreamer", 100_000, {"epochs": 300}) > 20 * short
    # sysVI's own rule, min(8e6 / N, 400) epochs, keeps the work of a large atlas bounded
    assert jr.integrate_runtime("sysvi", 500_000, {}) < 2 * jr.integrate_runtime("sysvi", 100_000, {})
    assert jr.integrate_runtime("sysvi", 100_000, {"max_epochs": 400}) > jr.integrate_runtime("sysvi", 100_000, {})


def test_an_unknown_method_gets_the_generic_line():
    assert jr.integrate_mem_mb("my_external_method", 100_000, 2000) == jr.integrate_mem_mb("combat", 100_000, 2000)


@pytest.mark.parametrize("cells,job_cells,sizes", [
    (2_500, 200_000, [80, 80, 40]),  # small runs: many to a job
    (30_000, 200_000, [6] * 33 + [2]),
    (150_000, 200_000, [1] * 200),  # above half the budget: one run per job
    (None, 200_000, [1] * 200),  # unknown size: one run per job
])
def test_scoring_jobs_are_packed_by_cells(cells, job_cells, sizes):
    runs = [f"run{i}" for i in range(200)]
    jobs = jr.pack_runs(runs, cells, job_cells)
    assert [len(j) for j in jobs] == sizes
    assert [r for j in jobs for r in j] == runs  # every run once, in order


def test_size_is_read_from_the_h5ad_header(sim_small, sim_small_path, tmp_path):
    cells, genes, nnz = jr.h5ad_size(str(sim_small_path))
    assert (cells, genes) == sim_small.shape and nnz == sim_small.X.nnz
    assert jr.h5ad_size(str(tmp_path / "missing.h5ad")) is None
    (tmp_path / "bad.h5ad").write_text("not hdf5")
    assert jr.h5ad_size(str(tmp_path / "bad.h5ad")) is None
