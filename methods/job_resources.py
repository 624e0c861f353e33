"""Memory and runtime requests of the workflow's jobs, from the data's size and the method.

Snakemake asks these functions for each job's ``mem_mb`` and ``runtime`` (minutes); on a
cluster they become the job's ``--mem`` and ``-t``. Every request grows with the attempt
(x1, x2, x3), so a job killed for memory or time is retried with more.

The coefficients are the measurements in README.md, "Benchmarks" (2 cores, 1 thread, CPU,
2000 HVGs): peak memory (including the input) and wall time at 10k and 100k cells for the
baselines, 10k/50k for sysVI, 10k for scDREAMER, 10k/100k/500k for the metrics; the data
stage was measured the same way for this module (simulate 5k/20k cells x 10k genes: 0.49 /
0.60 GB, 7 / 22 s; preprocess of 8.1M non-zeros: 0.75 GB, 7 s). Each family's memory is a
line through its two measured points:

    mem_mb  = (base_mb + kb_per_cell * cells * genes / 2000 / 1024) * MEM_HEADROOM * attempt
    runtime = (start_s + IO_S_PER_CELL * cells + seconds(cells, params)) * TIME_SAFETY / 60 * attempt

Deep models' seconds are seconds per cell and epoch times the epochs the method will run
(its parameter, or its own default rule, e.g. sysVI's min(8e6 / N, 400)). These are CPU
numbers: a GPU job ends well inside them (no GPU timing exists for this project yet).
Methods without a benchmark use the most expensive measured baseline's line (``GENERIC``).
"""

from __future__ import annotations

import functools
import glob
import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

MEM_HEADROOM = 1.3  # peak memory varies with the data's sparsity and the allocator
TIME_SAFETY = 2.0  # slower or shared cluster CPUs, file systems under load
MIN_MEM_MB = 1000
MIN_RUNTIME_MIN = 10
HVG_REFERENCE = 2000  # genes of the benchmarks the coefficients come from
PLAN_NNZ_PER_CELL = 2000  # non-zeros per raw cell assumed before a raw file exists (10x-like)
# Reading the dataset and writing the run file, on top of a method's own time (the baselines'
# benchmark times start after loading): about a minute per 100k cells on a shared file system.
IO_S_PER_CELL = 0.5e-3


@dataclass(frozen=True)
class Cost:
    """One job family: memory line and runtime model."""

    base_mb: float  # interpreter, libraries, fixed buffers
    kb_per_cell: float  # memory per cell at 2000 genes (scaled by genes / 2000)
    seconds: Callable[[int, dict[str, Any]], float]  # (cells, params) -> seconds of work
    start_s: float = 15.0  # process start, imports, reading the input


def _per_cell(ms: float, base_s: float = 0.0) -> Callable[[int, dict], float]:
    return lambda cells, params: base_s + ms * 1e-3 * cells


def _per_cell_epoch(ms: float, epochs: Callable[[int, dict], float]) -> Callable[[int, dict], float]:
    return lambda cells, params: ms * 1e-3 * cells * epochs(cells, params)


def _epochs_param(key: str, default: Callable[[int], float]) -> Callable[[int, dict], float]:
    def epochs(cells: int, params: dict) -> float:
        value = params.get(key)
        return float(value) if value is not None else default(cells)

    return epochs


def _sysvi_default_epochs(cells: int) -> float:
    """sysVI / scvi-tools rule (methods/sysvi.py default_epochs)."""
    return max(1, min(round(8e6 / max(cells, 1)), 400))


def _scanvi_epochs(cells: int, params: dict) -> float:
    """scVI pre-training plus scANVI's (at most 10 by scvi-tools' heuristic)."""
    scvi = _epochs_param("max_epochs", _sysvi_default_epochs)(cells, params)
    return scvi + float(params.get("scanvi_max_epochs") or 10)


def _sccraft_seconds(cells: int, params: dict) -> float:
    """scCRAFT samples 512 cells per batch per epoch, max(150, 1.5 N / (B 512)) epochs; 1.79 s per
    1536-cell epoch (3 batches, 10 discriminator steps per minibatch), assumed 10 batches when the
    epochs are not given; plus the Leiden clusterings (about as the metrics' per-cell cost)."""
    batches, per_batch = 10, int(params.get("cells_per_batch") or 512)
    epochs = params.get("max_epochs") or max(150, int(1.5 * cells / (batches * per_batch)))
    return float(epochs) * batches * per_batch * 1.79 / 1536 + 2e-3 * cells


def _imap_seconds(cells: int, params: dict) -> float:
    """iMAP epochs draw ``epoch_samples`` cells each: 171 s for 5 + 5 epochs of 10240 at 10k
    cells, 121 s for 2 + 2 at 100k (the rest is its per-cell mutual-nearest-neighbour step)."""
    epochs = float(params.get("stage1_epochs", 150)) + float(params.get("stage2_epochs", 150))
    draws = float(params.get("epoch_samples", 10240)) / 10240
    return 17.0 * epochs * draws + 0.5e-3 * cells


_SYSVI = Cost(370, 24.0, _per_cell_epoch(0.146, _epochs_param("max_epochs", _sysvi_default_epochs)))
GENERIC = Cost(420, 118.0, _per_cell(0.8))  # ComBat's memory line, Scanorama's time
METHOD_COSTS: dict[str, Cost] = {
    # baselines: 10k and 100k cells, 1 thread (bench_baselines.py)
    "unintegrated": Cost(356, 24.4, _per_cell(0.013)),
    "harmony": Cost(356, 24.4, _per_cell(0.013)),
    "scanorama": Cost(411, 108.9, _per_cell(0.79)),
    "bbknn": Cost(567, 23.3, _per_cell(0.044, 8.6)),
    "combat": Cost(422, 117.8, _per_cell(0.70)),
    "scvi": Cost(767, 33.3, _per_cell_epoch(0.24, _epochs_param("max_epochs", _sysvi_default_epochs))),
    "scanvi": Cost(800, 40.0, _per_cell_epoch(0.26, _scanvi_epochs)),
    # Seurat: 4.6 GB and 83 s (RPCA) / 157 s (CCA) at 10k; at 100k killed above 21 GB, > 600 s
    "seurat_cca": Cost(2100, 250.0, _per_cell(16.0)),
    "seurat_rpca": Cost(2100, 250.0, _per_cell(16.0)),
    "imap": Cost(1144, 75.6, _imap_seconds),
    # PyTorch models written here: sysVI family 10k / 50k (bench_sysvi.py, fp32)
    **{name: _SYSVI for name in ("cvae", "vamp", "cyc", "sysvi", "adv")},
    "sysvi_scvitools": Cost(752, 7.8, _per_cell_epoch(0.296, _epochs_param("max_epochs", _sysvi_default_epochs))),
    # DAVAE: no benchmark; a smaller MLP than sysVI's, costed as sysVI per epoch
    "davae": Cost(370, 24.0, _per_cell_epoch(0.146, _epochs_param("epochs", lambda n: 20))),
    # scDREAMER: 3.30 s per epoch and 0.9 GB at 10k (bench_scdreamer.py); memory slope as scVI's
    **{name: Cost(570, 33.3, _per_cell_epoch(0.33, _epochs_param("epochs", lambda n: 300)))
       for name in ("scdreamer", "scdreamer_sup")},
    "sccraft": Cost(570, 33.3, _sccraft_seconds),
}

# Stages other than integration (cells x genes of their input).
METRICS = Cost(1125, 8.75, _per_cell(1.9), start_s=40.0)  # 1.3 / 2.0 / 5.5 GB, 26 / 128 / 957 s
SIMULATE = Cost(450, 0.0, _per_cell(1.0))  # memory from cells x genes below (dense generator)
SUBSAMPLE = Cost(350, 24.4, _per_cell(0.1))
PREPROCESS_BYTES_PER_NNZ = 56  # 0.75 GB peak for 8.1M non-zeros over a 0.3 GB interpreter
PREPROCESS_US_PER_NNZ = 0.7


def method_cost(method: str) -> Cost:
    return METHOD_COSTS.get(method, GENERIC)


def _mem(base_mb: float, data_mb: float, attempt: int) -> int:
    """The first attempt's request rounded up to 100 MB, times the attempt."""
    first = max(MIN_MEM_MB, (base_mb + data_mb) * MEM_HEADROOM)
    return int(math.ceil(first / 100) * 100) * attempt


def _minutes(seconds: float, attempt: int) -> int:
    return int(math.ceil(max(MIN_RUNTIME_MIN, seconds * TIME_SAFETY / 60))) * attempt


def _data_mb(cost: Cost, cells: int, genes: int) -> float:
    return cost.kb_per_cell * cells * genes / HVG_REFERENCE / 1024


def integrate_mem_mb(method: str, cells: int, genes: int, attempt: int = 1) -> int:
    cost = method_cost(method)
    return _mem(cost.base_mb, _data_mb(cost, cells, genes), attempt)


def integrate_runtime(method: str, cells: int, params: dict[str, Any] | None = None,
                      attempt: int = 1) -> int:
    cost = method_cost(method)
    return _minutes(cost.start_s + IO_S_PER_CELL * cells + cost.seconds(cells, params or {}), attempt)


def metrics_mem_mb(cells: int, attempt: int = 1) -> int:
    """One scoring process holds one run at a time: its peak is a single run's."""
    return _mem(METRICS.base_mb, _data_mb(METRICS, cells, HVG_REFERENCE), attempt)


def metrics_runtime(cells: int, n_runs: int, attempt: int = 1) -> int:
    """Start-up (imports and JIT warm-up, paid once per job) plus each run's scoring."""
    per_run = METRICS.seconds(cells, {})
    return _minutes(METRICS.start_s + n_runs * per_run, attempt)


def simulate_resources(cells: int, genes: int, attempt: int = 1) -> tuple[int, int]:
    """(mem_mb, runtime) of simulating ``cells`` x ``genes`` (0.75 bytes per cell and gene)."""
    mem = _mem(SIMULATE.base_mb, 0.75 * cells * genes / 2**20, attempt)
    return mem, _minutes(SIMULATE.start_s + SIMULATE.seconds(cells, {}) * genes / 10000, attempt)


def raw_resources(nnz: float, attempt: int = 1) -> tuple[int, int]:
    """(mem_mb, runtime) of downloading or preprocessing a raw matrix with ``nnz`` non-zeros."""
    mem = _mem(300, PREPROCESS_BYTES_PER_NNZ * nnz / 2**20, attempt)
    return mem, _minutes(30 + PREPROCESS_US_PER_NNZ * 1e-6 * nnz, attempt)


def subsample_resources(cells: int, genes: int, attempt: int = 1) -> tuple[int, int]:
    mem = _mem(SUBSAMPLE.base_mb, _data_mb(SUBSAMPLE, cells, genes), attempt)
    return mem, _minutes(SUBSAMPLE.start_s + SUBSAMPLE.seconds(cells, {}), attempt)


def h5ad_size(path: str) -> tuple[int, int, int] | None:
    """(cells, genes, non-zeros of X) of an h5ad file from its header, or None when it cannot be
    read (not there yet, not h5ad, h5py missing in the Snakemake environment)."""
    if not os.path.isfile(path):  # the usual case while planning: checked cheaply first
        return None
    try:
        import h5py

        with h5py.File(path, "r") as f:
            obs, var = f["obs"], f["var"]
            cells = int(obs[obs.attrs.get("_index", "_index")].shape[0])
            genes = int(var[var.attrs.get("_index", "_index")].shape[0])
            x = f.get("X")
            if x is None:
                nnz = 0
            elif isinstance(x, h5py.Group):  # sparse: data holds the non-zeros
                nnz = int(x["data"].shape[0])
            else:
                nnz = cells * genes
            return cells, genes, nnz
    except Exception:  # noqa: BLE001 - any unreadable file means "size unknown"
        return None


@functools.cache
def local_gpu() -> bool:
    """Whether this machine shows an NVIDIA GPU to its processes (device files; importing torch
    to ask would cost seconds in the Snakemake process)."""
    if os.environ.get("CUDA_VISIBLE_DEVICES") in ("", "-1"):
        return False
    return bool(glob.glob("/dev/nvidia[0-9]*"))


def pack_runs(runs: list, cells: int | None, job_cells: int) -> list[list]:
    """Split a dataset's runs into scoring jobs of at most ``job_cells`` cells in all.

    A dataset of unknown size, or one of at least half of ``job_cells`` cells, gets one job
    per run. Order is kept, so the same config gives the same jobs.
    """
    per_job = 1 if not cells else max(1, job_cells // cells)
    return [runs[i:i + per_job] for i in range(0, len(runs), per_job)]
