"""Wall time and peak memory of the full metric set per number of cells, and per metric.

For each size a synthetic dataset is written (12 cell types incl. a rare one present in one
batch, 4 batches partly mixed, 30-dim embedding, 200 sparse genes following a within-type
gradient for Moran's I) with one run file, and scored by ``metrics.score.score_many`` in a
fresh process (so each size pays the JIT warm-up, as a Snakemake job does; set
BENCH_CACHE_DIR to let JAX reuse compiled code). Every metric of the catalog is computed,
Moran's I and kBET over neighbourhood sizes included. Reports the wall time, the peak memory
(the scoring process's own high-water mark, and the sampled peak of its whole process tree,
which includes joblib workers when ``n_jobs`` > 1) and the seconds of every step of
metrics.json (shared steps such as the kNN search and the Leiden clusterings are their own
rows; a metric's row excludes them). ``--compare-knn`` also times exact vs pynndescent kNN.

The sizes of issue #14 / #16 (run each on an otherwise idle machine; one size per line keeps
the results apart when one fails):

    python benchmarks/bench_metrics.py --n-cells 100000 --json bench_100k.json
    python benchmarks/bench_metrics.py --n-cells 500000 --json bench_500k.json
    python benchmarks/bench_metrics.py --n-cells 1000000 --options '{"n_jobs": 2}' --json bench_1m.json

``--options`` takes the metrics options JSON of ``metrics/score.py`` (``n_jobs``: threads of the
kNN search and processes of the Leiden resolutions; the size caps ``asw_max_cells``,
``kbet_max_cells``, ``moransi_exact_max_cells``).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def write_synthetic(workdir: Path, n_cells: int, seed: int = 0, n_types: int = 12, n_batches: int = 4,
                    dim: int = 30, n_genes: int = 200) -> tuple[Path, Path]:
    """data.h5ad + run.h5ad for ``n_cells`` cells (the run embedding is partly batch-corrected)."""
    import anndata as ad
    import pandas as pd
    import scipy.sparse as sp

    rng = np.random.default_rng(seed)
    props = rng.dirichlet(np.ones(n_types) * 2)
    props[-1] = 0.005  # a rare type
    props /= props.sum()
    lab = rng.choice(n_types, n_cells, p=props)
    bat = rng.integers(0, n_batches, n_cells)
    bat[lab == n_types - 1] = 0  # the rare type is isolated in one batch
    centers = rng.normal(size=(n_types, dim)) * 3
    batch_fx = rng.normal(size=(n_batches, dim))
    grad = rng.uniform(0, 1, n_cells)  # within-type state the genes follow
    direction = rng.normal(size=(n_types, dim))
    emb_pre = centers[lab] + 2 * batch_fx[bat] + grad[:, None] * direction[lab] + rng.normal(size=(n_cells, dim))
    emb_post = centers[lab] + 0.5 * batch_fx[bat] + grad[:, None] * direction[lab] + rng.normal(size=(n_cells, dim))
    loadings = rng.normal(size=(dim, n_genes)) * 0.3
    expr = np.maximum(emb_pre @ loadings + np.sin(4 * grad)[:, None] - 1.0, 0)
    X = sp.csr_matrix(np.log1p(expr).astype(np.float32))
    obs = pd.DataFrame({"batch": pd.Categorical([f"b{b}" for b in bat]),
                        "label": pd.Categorical([f"type{t}" for t in lab])},
                       index=[f"c{i}" for i in range(n_cells)])
    data = ad.AnnData(X=X, obs=obs)
    data.obsm["X_pca"] = emb_pre.astype(np.float32)
    data.uns["dataset"] = {"name": f"bench{n_cells}"}
    run = ad.AnnData(obs=obs.copy())
    run.obsm["X_emb"] = emb_post.astype(np.float32)
    run.uns["run_json"] = json.dumps({"method": "bench", "setting": "default", "seed": 0, "status": "ok"})
    data_path, run_path = workdir / f"data{n_cells}.h5ad", workdir / f"run{n_cells}.h5ad"
    data.write_h5ad(data_path)
    run.write_h5ad(run_path)
    return data_path, run_path


def child(data_path: str, run_path: str, out_path: str, options: str, compare_knn: bool) -> None:
    """Runs in a fresh process: score one run, print wall time, peak RSS and timings as JSON."""
    from methods.base import peak_rss_mb
    from metrics.score import score_many

    t0 = time.perf_counter()
    res = score_many(data_path, [run_path], [out_path], json.loads(options))[0]
    wall = time.perf_counter() - t0
    import jax

    report = {"wall_s": round(wall, 2), "peak_rss_mb": peak_rss_mb(), "jax_backend": jax.default_backend(),
              "status": res["status"], "error": res["error"], "timing": res["timing"],
              "metrics": res["metrics"], "na_reasons": res["na_reasons"]}
    if compare_knn:
        import anndata as ad

        from metrics.neighbors import approx_knn, exact_knn

        emb = np.asarray(ad.read_h5ad(run_path).obsm["X_emb"])
        knn = {}
        if emb.shape[0] <= 200_000:
            t = time.perf_counter()
            exact_knn(emb, 90)
            knn["exact_s"] = round(time.perf_counter() - t, 2)
        for key in ("pynndescent_first_s", "pynndescent_s"):  # first call includes numba JIT
            t = time.perf_counter()
            approx_knn(emb, 90)
            knn[key] = round(time.perf_counter() - t, 2)
        report["knn"] = knn
    print("BENCH_RESULT " + json.dumps(report))


def _tree_rss_mb(pid: int) -> float:
    """Resident memory of a process and all its descendants (MiB), from /proc."""
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        try:
            with open(f"/proc/{p}/status") as fh:
                total += next((int(ln.split()[1]) for ln in fh if ln.startswith("VmRSS:")), 0)
            for task in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{task}/children") as fh:
                    todo.extend(int(c) for c in fh.read().split())
        except (OSError, ValueError):
            continue
    return total / 1024


def run_child(cmd: list[str], env: dict, timeout: int) -> tuple[dict, float]:
    """Run the scoring child, sampling its process tree's memory; (its BENCH_RESULT, tree peak MiB)."""
    peak = 0.0
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, text=True, env=env)
        t0 = time.monotonic()
        while proc.poll() is None:
            peak = max(peak, _tree_rss_mb(proc.pid))
            if time.monotonic() - t0 > timeout:
                proc.kill()
                proc.wait()
                return {"error": f"timed out after {timeout} s"}, peak
            time.sleep(0.5)
        out.seek(0)
        err.seek(0)
        line = [ln for ln in out.read().splitlines() if ln.startswith("BENCH_RESULT ")]
        rec = json.loads(line[-1][len("BENCH_RESULT "):]) if line else {"error": err.read()[-2000:]}
    return rec, peak


def print_report(rec: dict) -> None:
    """One summary line and the per-step seconds, slowest first."""
    timing = rec.get("timing", {})
    print(f"n={rec['n_cells']}: wall {rec.get('wall_s')} s, peak RSS {rec.get('peak_rss_mb', 0):.0f} MB "
          f"(process tree {rec.get('peak_tree_rss_mb', 0):.0f} MB), status {rec.get('status')}", flush=True)
    total = timing.get("total") or 1.0
    for k, v in sorted(((k, v) for k, v in timing.items() if k != "total"), key=lambda kv: -kv[1]):
        print(f"   {k:28s} {v:9.1f} s  {100 * v / total:5.1f} %", flush=True)
    if "knn" in rec:
        print(f"   knn k=90: {rec['knn']}", flush=True)
    if rec.get("error"):
        print(f"   error: {rec['error'][:500]}", flush=True)
    nulls = rec.get("na_reasons") or {}
    if nulls:
        print(f"   NA: {nulls}", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n-cells", type=int, nargs="+", default=[100_000])
    parser.add_argument("--options", default="{}", help="metrics options JSON (see metrics/score.py)")
    parser.add_argument("--workdir", default=None, help="where the synthetic files go (default: a temp dir); "
                        "files of a size already there are reused")
    parser.add_argument("--json", default=None, help="write all results here")
    parser.add_argument("--compare-knn", action="store_true")
    parser.add_argument("--timeout", type=int, default=7200)
    parser.add_argument("--child", nargs=3, metavar=("DATA", "RUN", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(*args.child, args.options, args.compare_knn)
        return 0
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="bench_metrics_"))
    workdir.mkdir(parents=True, exist_ok=True)
    results = []
    for n in args.n_cells:
        data_path, run_path = workdir / f"data{n}.h5ad", workdir / f"run{n}.h5ad"
        if not (data_path.exists() and run_path.exists()):
            data_path, run_path = write_synthetic(workdir, n)
        cmd = [sys.executable, __file__, "--child", str(data_path), str(run_path),
               str(workdir / f"metrics{n}.json"), "--options", args.options]
        if args.compare_knn:
            cmd.append("--compare-knn")
        rec, tree_peak = run_child(cmd, {**os.environ, "PYTHONPATH": str(REPO)}, args.timeout)
        rec.update(n_cells=n, options=json.loads(args.options), peak_tree_rss_mb=round(tree_peak))
        results.append(rec)
        print_report(rec)
    if args.json:
        tmp = Path(args.json).with_suffix(".tmp")
        tmp.write_text(json.dumps(results, indent=1))
        os.replace(tmp, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
