"""Wall time and peak memory of each baseline on N simulated cells.

Usage (from the repo root):
    python benchmarks/bench_baselines.py --n-cells 10000 [--n-genes 2000] [--methods scanorama bbknn ...]
        [--scvi-epochs 20] [--imap-epochs 5] [--threads 1] [--timeout 1800] [--out results/bench_baselines.tsv]

Each method runs in its own spawned child process that reads the data from a temporary h5ad
(like the runner's child), so its peak RSS is its own (``VmHWM`` of the child, or the peak of its
subprocesses such as Rscript when larger) and a crash or out-of-memory of one method does not
stop the others. (Spawn, not fork: a fork after the parent used GNU OpenMP makes numba-parallel
code in the child, e.g. BBKNN's connectivities, abort.) All methods get the same
simulated, preprocessed dataset (negative-binomial counts, 8 cell types, 2 batches with a
gene-wise batch effect; normalize_total 1e4 + log1p, 50-PC PCA). scVI/scANVI run a fixed
number of epochs (``--scvi-epochs``), not scvi-tools' heuristic, so their times scale per epoch;
iMAP runs ``--imap-epochs`` epochs in each stage (its defaults are 150 + 150; an iMAP epoch is
10240 random draws whatever the number of cells, so its time per epoch hardly grows with cells).
A method still running after ``--timeout`` seconds is killed (with its subprocesses, e.g.
Rscript) and recorded as "timeout".
Prints a TSV (method, n_cells, n_genes, status, seconds, peak_rss_mb, epochs, error) and
writes it to ``--out`` when given. Timings depend on the machine's load: note it when
reporting. Nothing here is asserted.
"""

from __future__ import annotations

import argparse
import importlib
import json
import multiprocessing
import os
import shutil
import sys
import tempfile
import time
import traceback
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

DEFAULT_METHODS = ["unintegrated", "harmony", "scanorama", "bbknn", "combat", "scvi", "scanvi",
                   "seurat_rpca", "seurat_cca", "imap"]


def simulate(n_cells: int, n_genes: int, n_types: int = 8, n_batches: int = 2, seed: int = 0):
    """Preprocessed-like AnnData (counts layer, log-normalized CSR X, X_pca, batch/label/system)."""
    import anndata as ad
    import pandas as pd
    import scanpy as sc
    import scipy.sparse as sp

    rng = np.random.default_rng(seed)
    base = rng.lognormal(-1.0, 1.2, n_genes)
    type_fc = np.where(rng.random((n_types, n_genes)) < 0.1, rng.lognormal(1.0, 0.5, (n_types, n_genes)), 1.0)
    batch_fc = rng.lognormal(0.0, 0.4, (n_batches, n_genes))
    batch = rng.integers(0, n_batches, n_cells)
    label = rng.integers(0, n_types, n_cells)
    lib = rng.lognormal(0.0, 0.3, n_cells)
    # Chunked so 100k+ cells do not need a dense float64 cells x genes mean matrix at once.
    rows = []
    for start in range(0, n_cells, 20000):
        sl = slice(start, min(start + 20000, n_cells))
        mean = base[None, :] * type_fc[label[sl]] * batch_fc[batch[sl]] * lib[sl, None] * 5
        rows.append(sp.csr_matrix(rng.poisson(rng.gamma(5.0, mean / 5.0)).astype(np.float32)))
    counts = sp.vstack(rows).tocsr()
    obs = pd.DataFrame({"batch": pd.Categorical([f"Batch{b + 1}" for b in batch]),
                        "label": pd.Categorical([f"Group{t + 1}" for t in label]),
                        "system": pd.Categorical(["sys0"] * n_cells)},
                       index=[f"cell{i}" for i in range(n_cells)])
    adata = ad.AnnData(X=counts, obs=obs, var=pd.DataFrame(index=[f"gene{g}" for g in range(n_genes)]))
    adata.layers["counts"] = counts.copy()
    sc.pp.normalize_total(adata, target_sum=1e4)
    sc.pp.log1p(adata)
    adata.X = sp.csr_matrix(adata.X, dtype=np.float32)
    sc.pp.pca(adata, n_comps=50, random_state=0)
    return adata


def method_params(name: str, scvi_epochs: int, imap_epochs: int = 5) -> dict:
    """Registry defaults except a fixed epoch budget for the scvi-tools models and iMAP."""
    if name == "imap":
        return {"stage1_epochs": imap_epochs, "stage2_epochs": imap_epochs}
    if name == "scvi":
        return {"max_epochs": scvi_epochs}
    if name == "scanvi":
        return {"max_epochs": scvi_epochs, "scanvi_max_epochs": max(2, scvi_epochs // 3)}
    return {}


def _child(data_path: str, name: str, params: dict, threads: int, result_path: str) -> None:
    sys.path.insert(0, str(REPO_ROOT))
    import anndata as ad

    from methods import registry
    from methods.base import peak_rss_mb

    out = {"status": "failed", "error": "", "seconds": None, "epochs": None}
    try:
        import torch

        adata = ad.read_h5ad(data_path)

        torch.set_num_threads(threads)
        spec = registry.get(name)
        merged = registry.merge_params(name, params)
        module = importlib.import_module(spec.module)
        t0 = time.perf_counter()
        res = module.integrate(adata, batch_key="batch", label_key="label", params=merged, seed=0,
                               device="cpu")
        res.check(adata.n_obs)
        out.update(status="ok", seconds=round(time.perf_counter() - t0, 2), epochs=res.epochs)
    except BaseException as exc:  # noqa: BLE001 - a benchmark records every failure
        out["error"] = f"{type(exc).__name__}: {exc}"[:300]
        traceback.print_exc()
    out["peak_rss_mb"] = round(peak_rss_mb(include_children=True), 1)
    Path(result_path).write_text(json.dumps(out))


def _kill_tree(pid: int) -> None:
    """SIGKILL a process and its descendants (Rscript children of the Seurat methods)."""
    import signal
    import subprocess

    children = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout.split()
    for child in children:
        _kill_tree(int(child))
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def run_one(data_path: Path, name: str, params: dict, threads: int, tmp_dir: Path,
            timeout: float | None = None) -> dict:
    """Run one method in a spawned child; its timing, peak RSS and status."""
    result_path = tmp_dir / f".bench_{name}_{os.getpid()}.json"
    proc = multiprocessing.get_context("spawn").Process(
        target=_child, args=(str(data_path), name, params, threads, str(result_path)))
    proc.start()
    proc.join(timeout)
    if proc.is_alive():
        _kill_tree(proc.pid)
        proc.join()
        return {"status": "timeout", "error": f"still running after {timeout} s", "seconds": None,
                "epochs": None, "peak_rss_mb": None}
    if result_path.exists():
        out = json.loads(result_path.read_text())
        result_path.unlink()
        return out
    return {"status": "failed", "error": f"child exited with code {proc.exitcode}", "seconds": None,
            "epochs": None, "peak_rss_mb": None}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n-cells", type=int, default=10000)
    ap.add_argument("--n-genes", type=int, default=2000)
    ap.add_argument("--methods", nargs="+", default=DEFAULT_METHODS)
    ap.add_argument("--scvi-epochs", type=int, default=20)
    ap.add_argument("--imap-epochs", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--timeout", type=float, default=None, help="seconds per method (default: none)")
    ap.add_argument("--out", default=None, help="TSV path (written atomically)")
    args = ap.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))

    t0 = time.perf_counter()
    adata = simulate(args.n_cells, args.n_genes)
    print(f"# simulated {adata.n_obs} cells x {adata.n_vars} genes in {time.perf_counter() - t0:.1f}s",
          flush=True)
    header = "method\tn_cells\tn_genes\tstatus\tseconds\tpeak_rss_mb\tepochs\terror"
    lines = [header]
    print(header, flush=True)
    tmp_dir = Path(tempfile.mkdtemp(prefix="bench_baselines_"))
    data_path = tmp_dir / "data.h5ad"
    adata.write_h5ad(data_path)
    n_obs, n_vars = adata.n_obs, adata.n_vars
    del adata
    for name in args.methods:
        r = run_one(data_path, name, method_params(name, args.scvi_epochs, args.imap_epochs), args.threads, tmp_dir,
                    args.timeout)
        line = "\t".join(str(v) for v in (name, n_obs, n_vars, r["status"], r["seconds"],
                                          r["peak_rss_mb"], r["epochs"], r["error"].replace("\t", " ")))
        lines.append(line)
        print(line, flush=True)
    shutil.rmtree(tmp_dir, ignore_errors=True)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(args.out).with_name(Path(args.out).name + f".tmp{os.getpid()}")
        tmp.write_text("\n".join(lines) + "\n")
        os.replace(tmp, args.out)


if __name__ == "__main__":
    main()
