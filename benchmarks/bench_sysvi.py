"""Benchmark: our sysVI (methods.sysvi) vs scvi-tools' SysVI (methods.sysvi_scvitools).

Same architecture, batch size, epochs and data (simulated two-system cells, 2000 genes), at
each ``--precision`` (fp32, and bf16-mixed: torch.autocast to bfloat16 in both, Lightning's
"bf16-mixed" for scvi-tools) and each ``--seeds`` value (the spread across seeds is the seed
noise the scores are compared with). Each (n_cells, method, precision, seed) runs in a fresh
process that reads the simulated data from an h5ad, so its peak RSS is data + training.
Reports seconds per epoch (training wall time) and CPU seconds per epoch (whole call; robust to
a busy machine), peak RSS, peak GPU memory, iLISI (unscaled, 30-NN) and KMeans NMI, then the
speed ratios (seed means) per size: each of ours vs scvi-tools at fp32, and at equal precision.
Not a test; the target is ours >= 2x faster per epoch on CPU with scores within seed noise.

    python benchmarks/bench_sysvi.py --n-cells 10000 50000 --epochs 3 --seeds 0 1 2 --threads 1
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import resource
import sys
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
METHODS = {"sysvi": "methods.sysvi", "sysvi_scvitools": "methods.sysvi_scvitools"}


def simulate(n_cells: int, n_genes: int = 2000, n_types: int = 8, batch_strength: float = 0.3, seed: int = 0):
    """Log-normalized two-system data with cell types and a multiplicative system effect."""
    import anndata as ad
    import pandas as pd
    import scipy.sparse as sp

    rng = np.random.default_rng(seed)
    types, system = rng.integers(0, n_types, n_cells), rng.integers(0, 2, n_cells)
    base = rng.gamma(1.0, 0.3, n_genes)
    type_fc = np.exp(rng.normal(0, 1.0, (n_types, n_genes)) * (rng.random((n_types, n_genes)) < 0.2))
    sys_fc = np.exp(rng.normal(0, batch_strength, (2, n_genes)) * (rng.random((2, n_genes)) < 0.5))
    mu = (base * type_fc[types] * sys_fc[system]).astype(np.float32)
    counts = rng.poisson(mu * rng.lognormal(0, 0.3, n_cells).astype(np.float32)[:, None]).astype(np.float32)
    lib = np.maximum(counts.sum(1, keepdims=True), 1)
    obs = pd.DataFrame({"batch": pd.Categorical([f"S{s}" for s in system]),
                        "label": pd.Categorical([f"T{t}" for t in types])},
                       index=[f"c{i}" for i in range(n_cells)])
    obs["system"] = obs["batch"]
    return ad.AnnData(X=sp.csr_matrix(np.log1p(counts / lib * 1e4).astype(np.float32)), obs=obs)


def _child(method: str, data_path: str, epochs: int, precision: str, seed: int, device: str, threads: int,
           emb_path: str, queue) -> None:
    import importlib

    import anndata as ad
    import torch

    sys.path.insert(0, str(REPO))
    torch.set_num_threads(threads)
    from methods import registry
    from methods.base import peak_rss_mb

    adata = ad.read_h5ad(data_path)  # as the runner's child: peak RSS = data + training
    params = registry.merge_params(method, {"max_epochs": epochs, "precision": precision})
    module = importlib.import_module(METHODS[method])
    cpu0 = resource.getrusage(resource.RUSAGE_SELF)
    res = module.integrate(adata, batch_key="batch", label_key="label", params=params, seed=seed, device=device)
    cpu1 = resource.getrusage(resource.RUSAGE_SELF)
    # CPU seconds of the whole integrate call (setup + training + embedding): robust to other
    # processes competing for the cores, unlike the wall-clock s_per_epoch
    cpu_s = (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime)
    np.save(emb_path, res.embedding)
    gpu = torch.cuda.max_memory_allocated() / 2**20 if torch.cuda.is_available() else None
    queue.put({"s_per_epoch": res.extra["s_per_epoch"], "train_s": res.extra["train_s"],
               "cpu_s_per_epoch": cpu_s / res.epochs,
               "epochs": res.epochs, "device": res.extra["device"],
               "peak_rss_mb": peak_rss_mb(), "peak_gpu_mb": gpu})


def scores(emb: np.ndarray, adata) -> tuple[float, float]:
    """iLISI (scib-metrics, unscaled) on a 30-NN graph and NMI of KMeans vs the true types."""
    import scib_metrics
    from scib_metrics.nearest_neighbors import NeighborsResults
    from sklearn.cluster import KMeans
    from sklearn.metrics import normalized_mutual_info_score
    from sklearn.neighbors import NearestNeighbors

    dist, idx = NearestNeighbors(n_neighbors=30).fit(emb).kneighbors(emb)
    ilisi = float(scib_metrics.ilisi_knn(NeighborsResults(indices=idx, distances=dist),
                                         adata.obs["batch"].cat.codes.to_numpy(), scale=False))
    km = KMeans(adata.obs["label"].nunique(), n_init=3, random_state=0).fit_predict(emb)
    return ilisi, float(normalized_mutual_info_score(adata.obs["label"], km))


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n-cells", type=int, nargs="+", default=[10000, 50000])
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=int(os.environ.get("OMP_NUM_THREADS", "1")))
    ap.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    ap.add_argument("--precision", nargs="+", default=["fp32", "bf16-mixed"], choices=["fp32", "bf16-mixed"])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--out", default="bench_sysvi.tsv")
    args = ap.parse_args(argv)
    import pandas as pd

    rows = []
    ctx = mp.get_context("spawn")
    with tempfile.TemporaryDirectory() as tmp:
        runs = [(n, m, p, s) for n in args.n_cells for m in args.methods
                for p in args.precision for s in args.seeds]
        data = {}
        for n, method, precision, seed in runs:
            if n not in data:
                data[n] = (simulate(n), os.path.join(tmp, f"data_{n}.h5ad"))
                data[n][0].write_h5ad(data[n][1])
            emb_path = os.path.join(tmp, f"{method}_{n}_{precision}_{seed}.npy")
            queue = ctx.Queue()
            proc = ctx.Process(target=_child, args=(method, data[n][1], args.epochs, precision, seed, args.device,
                                                    args.threads, emb_path, queue))
            proc.start()
            rec = queue.get()
            proc.join()
            ilisi, nmi = scores(np.load(emb_path), data[n][0])
            rows.append({"method": method, "n_cells": n, "precision": precision, "seed": seed,
                         "threads": args.threads, **rec, "ilisi": round(ilisi, 4), "nmi": round(nmi, 4)})
            print("\t".join(f"{k}={v}" for k, v in rows[-1].items()), flush=True)
    table = pd.DataFrame(rows)
    out = Path(args.out)
    tmp_out = out.with_name(f".{out.name}.tmp{os.getpid()}")
    table.to_csv(tmp_out, sep="\t", index=False)
    os.replace(tmp_out, out)
    summary = (table.groupby(["n_cells", "method", "precision"])
               .agg(s_per_epoch=("s_per_epoch", "mean"), cpu_s_per_epoch=("cpu_s_per_epoch", "mean"),
                    peak_rss_mb=("peak_rss_mb", "max"), ilisi=("ilisi", "mean"), ilisi_sd=("ilisi", "std"),
                    nmi=("nmi", "mean"), nmi_sd=("nmi", "std")))
    print(summary.round(4).to_string())
    for n in args.n_cells:
        sub = summary.loc[n]
        pairs = [(p, "fp32") for p in args.precision] + [(p, p) for p in args.precision if p != "fp32"]
        for ours, theirs in pairs:
            if ("sysvi", ours) in sub.index and ("sysvi_scvitools", theirs) in sub.index:
                a, b = sub.loc[("sysvi", ours)], sub.loc[("sysvi_scvitools", theirs)]
                print(f"n_cells={n}: scvi-tools {theirs} / ours {ours} per epoch: wall "
                      f"{b.s_per_epoch / a.s_per_epoch:.2f}x, CPU time {b.cpu_s_per_epoch / a.cpu_s_per_epoch:.2f}x")


if __name__ == "__main__":
    main()
