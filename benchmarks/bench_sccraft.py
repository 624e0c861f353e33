"""Benchmark scCRAFT: seconds per epoch and peak memory on simulated data (N cells x 2000 genes, 3 batches).

    python benchmarks/bench_sccraft.py                       # 10k and 100k cells, CPU, 2 threads
    python benchmarks/bench_sccraft.py --cells 10000 --epochs 5 --device cuda --out bench.tsv

Per size: simulate (datasets.simulate, 3 batches, 2000 genes, all kept as "HVGs"), normalize to
1e4 + log1p, dual-resolution clustering (timed separately: once per dataset, then cached), then
``--warm`` untimed epochs and ``--epochs`` timed epochs of the real training loop with the
adversarial term on (warm-up 0), so every epoch does the full work: one VAE forward, 10
discriminator steps and one generator step per minibatch. An epoch samples 512 cells per batch,
so its cost does not grow with N; memory does (the data live on the device).

Reference (issue "Proposed models II"): the released scCRAFT code takes 1.79 s per epoch on 10k
cells x 2000 HVGs in 3 batches on 2 cores; the target here is <= 1.35 s. Timings on a shared
machine are inflated by other jobs: report the load average with them (printed).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def simulated_lognorm(n_cells: int, n_genes: int, n_batches: int, seed: int):
    """Simulated counts -> normalize_total 1e4 -> log1p -> n_genes seurat HVGs (float32)."""
    import numpy as np
    import scanpy as sc

    from datasets.simulate import simulate

    # simulate 20% more genes so n_genes HVGs remain after the simulator's gene filter
    data = simulate(scenario="baseline", seed=seed, n_cells=n_cells, n_genes=int(n_genes * 1.2),
                    n_batches=n_batches, min_genes=20)
    sc.pp.normalize_total(data, target_sum=1e4)
    sc.pp.log1p(data)
    sc.pp.highly_variable_genes(data, n_top_genes=n_genes, batch_key="batch", flavor="seurat", subset=True)
    data.X = data.X.astype(np.float32)
    return data


def bench_one(n_cells: int, args) -> dict:
    """Time clustering and training epochs of scCRAFT on one simulated dataset."""
    import numpy as np
    import torch

    from methods import sccraft
    from methods.base import peak_rss_mb
    from methods.nn.training import pick_device, seed_all, to_device_tensor
    from methods.sccraft_clusters import cached_dual_resolution_clusters

    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    data = simulated_lognorm(n_cells, args.genes, args.batches, args.seed)
    sim_s = time.perf_counter() - t0
    p = sccraft.check_params({"warmup_epochs": 0})
    t0 = time.perf_counter()
    if args.random_clusters:  # skip the (once per dataset) clustering: random labels
        rng = np.random.default_rng(0)
        low, high = rng.integers(0, 10, data.n_obs), rng.integers(0, 300, data.n_obs)
    else:
        low, high, _ = cached_dual_resolution_clusters(data.X, cache_dir="", low_resolution=p["low_resolution"],
                                                       high_resolution=p["high_resolution"])
    cluster_s = time.perf_counter() - t0
    dev = pick_device(args.device)
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    gen = seed_all(args.seed)
    tgen = torch.Generator(device=dev)
    tgen.manual_seed(args.seed + 1)
    codes = data.obs["batch"].astype("category").cat.codes.to_numpy().astype(np.int64)
    n_batches = int(codes.max()) + 1
    X = to_device_tensor(data.X, dev)
    batch = torch.as_tensor(codes, device=dev)
    low_t, high_t = torch.as_tensor(low, device=dev), torch.as_tensor(high, device=dev)
    vae = sccraft.SCCRAFTVAE(X.shape[1], n_batches, p["n_latent"]).to(dev)
    disc = sccraft.make_discriminator(p["n_latent"], n_batches).to(dev)
    sccraft.train(vae, disc, X, batch, low_t, high_t, p, args.warm, gen, tgen)
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
    t0, cpu0 = time.perf_counter(), time.process_time()
    sccraft.train(vae, disc, X, batch, low_t, high_t, p, args.epochs, gen, tgen)
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
    epoch_s = (time.perf_counter() - t0) / args.epochs
    # CPU seconds of this process per epoch: less sensitive than wall time to other jobs on a
    # shared machine (cpu_s / threads approximates the wall time on an idle machine)
    epoch_cpu_s = (time.process_time() - cpu0) / args.epochs
    t0 = time.perf_counter()
    emb = sccraft.embedding(vae, X, p["latent"], p["pca_dims"], args.seed)
    embed_s = time.perf_counter() - t0
    return {
        "n_cells": int(data.n_obs), "n_genes": int(data.n_vars), "n_batches": n_batches, "device": str(dev),
        "threads": args.threads, "s_per_epoch": round(epoch_s, 3),
        "cpu_s_per_epoch": round(epoch_cpu_s, 3), "timed_epochs": args.epochs,
        "cluster_s": round(cluster_s, 2), "embed_s": round(embed_s, 2), "simulate_s": round(sim_s, 2),
        "peak_rss_mb": round(peak_rss_mb(), 1),
        "peak_gpu_mb": (round(torch.cuda.max_memory_allocated(dev) / 2**20, 1) if dev.type == "cuda" else None),
        "emb_shape": list(emb.shape), "loadavg_1min": round(os.getloadavg()[0], 2),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cells", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--genes", type=int, default=2000)
    parser.add_argument("--batches", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=5, help="timed epochs")
    parser.add_argument("--warm", type=int, default=1, help="untimed epochs first")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--random-clusters", action="store_true",
                        help="random cluster labels instead of the (slow, once per dataset) clustering")
    parser.add_argument("--out", help="TSV file to write (one row per size)")
    args = parser.parse_args(argv)
    rows = []
    for n in args.cells:  # peak RSS is per process: sizes in increasing order
        row = bench_one(n, args)
        print(json.dumps(row), flush=True)
        rows.append(row)
    if args.out:
        import pandas as pd

        out = Path(args.out)
        tmp = out.with_name(f".{out.name}.tmp{os.getpid()}")
        pd.DataFrame(rows).to_csv(tmp, sep="\t", index=False)
        os.replace(tmp, out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
