"""How the proposed models (and scvi-tools' SCVI) scale with the number of cells on CPU.

For each size a synthetic dataset is written once (N cells x 2,000 genes, 8 cell types, 3
batches in 2 systems; Poisson counts in ``layers["counts"]``, log-normalized ``X``). Each model
then runs twice in a fresh process through its ``integrate`` (the runner's call), with 1 and
with ``1 + --epochs`` epochs (5x that for scCRAFT, whose epoch is short beside the noise of its
set-up), and every other parameter at its registry default:

- seconds per epoch = (time of the long run - time of the short run) / timed epochs: a full
  epoch at steady state, without data set-up, model construction or the first epoch;
- set-up = time of the short run - one epoch (moving the data, clustering for scCRAFT,
  Lightning for scVI);
- projected run = set-up + the model's released epoch rule at that size x seconds per epoch;
- CPU seconds per epoch: the same difference of the processes' CPU time (all threads);
- peak memory = the larger of the two processes' peak resident memory.

scCRAFT trains with its adversarial warm-up off here (``warmup_epochs: 0``), so every timed
epoch does the full work (its default run starts with 50 cheaper epochs); its epoch samples
512 cells per batch, so its epoch time does not grow with N: its set-up (dual-resolution
clustering) does. Exponents are log-log slopes over the sizes. Not a test.

    python benchmarks/bench_models_scaling.py --n-cells 10000 30000 100000 --epochs 2 \\
        --threads 2 --out bench_models_scaling.tsv --figure docs/scaling_models.png
"""

from __future__ import annotations

import argparse
import importlib
import multiprocessing as mp
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

# model -> (registry method, epoch parameter, parameters fixed for timing)
MODELS = {
    "sysvi": ("sysvi", "max_epochs", {}),
    "sccraft": ("sccraft", "max_epochs", {"warmup_epochs": 0}),
    "scdreamer": ("scdreamer", "epochs", {}),
    "davae": ("davae", "epochs", {}),
    "scvi": ("scvi", "max_epochs", {}),
}
# scCRAFT's epoch (~1 s, constant in N) is small beside the noise of its clustering set-up
# (several seconds), so its difference is taken over 5x the timed epochs
TIMED_EPOCH_FACTOR = {"sccraft": 5}


def simulate(n_cells: int, n_genes: int = 2000, n_types: int = 8, n_batches: int = 3, seed: int = 0):
    """Poisson counts with cell-type and batch fold changes; X = log1p(counts / library * 1e4)."""
    import anndata as ad
    import pandas as pd
    import scipy.sparse as sp

    rng = np.random.default_rng(seed)
    types, batch = rng.integers(0, n_types, n_cells), rng.integers(0, n_batches, n_cells)
    base = rng.gamma(1.0, 0.5, n_genes)
    type_fc = np.exp(rng.normal(0, 1.0, (n_types, n_genes)) * (rng.random((n_types, n_genes)) < 0.2))
    batch_fc = np.exp(rng.normal(0, 0.3, (n_batches, n_genes)) * (rng.random((n_batches, n_genes)) < 0.5))
    chunks = []
    for start in range(0, n_cells, 20000):  # bounded memory at 100k+ cells
        sl = slice(start, min(start + 20000, n_cells))
        mu = base * type_fc[types[sl]] * batch_fc[batch[sl]] * rng.lognormal(0, 0.3, sl.stop - sl.start)[:, None]
        chunks.append(sp.csr_matrix(rng.poisson(mu).astype(np.float32)))
    counts = sp.vstack(chunks).tocsr()
    lib = np.maximum(np.asarray(counts.sum(1)).ravel(), 1)
    X = sp.diags((1e4 / lib).astype(np.float32)) @ counts
    X.data = np.log1p(X.data)
    obs = pd.DataFrame({"batch": pd.Categorical([f"B{b}" for b in batch]),
                        "label": pd.Categorical([f"T{t}" for t in types]),
                        "system": pd.Categorical(["S0" if b == 0 else "S1" for b in batch])},
                       index=[f"c{i}" for i in range(n_cells)])
    adata = ad.AnnData(X=X.astype(np.float32).tocsr(), obs=obs, layers={"counts": counts})
    adata.var_names = [f"g{i}" for i in range(n_genes)]
    return adata


def _child(model: str, data_path: str, epochs: int, threads: int, queue) -> None:
    """One integrate call in this fresh process: its wall time and peak RSS."""
    import anndata as ad
    import torch

    sys.path.insert(0, str(REPO))
    torch.set_num_threads(threads)
    from methods import registry
    from methods.base import peak_rss_mb

    method, epoch_key, fixed = MODELS[model]
    adata = ad.read_h5ad(data_path)
    params = registry.merge_params(method, {**fixed, epoch_key: epochs})
    module = importlib.import_module(registry.METHODS[method].module)
    t0, cpu0 = time.perf_counter(), time.process_time()
    module.integrate(adata, batch_key="batch", label_key="label", params=params, seed=0, device="cpu")
    queue.put({"s": time.perf_counter() - t0, "cpu_s": time.process_time() - cpu0, "peak_rss_mb": peak_rss_mb()})


def _run(model: str, data_path: str, epochs: int, threads: int) -> dict:
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_child, args=(model, data_path, epochs, threads, queue))
    proc.start()
    try:
        return queue.get(timeout=7200)
    finally:
        proc.join()


def released_epochs(model: str, n_cells: int, n_batches: int = 3) -> int:
    """Epochs of the model's released rule (registry default or its epoch heuristic)."""
    from methods import registry, sccraft, sysvi

    if model in ("sysvi", "scvi"):  # scvi-tools' rule, which sysVI's code keeps
        return sysvi.default_epochs(n_cells)
    if model == "sccraft":
        return sccraft.default_epochs(n_cells, n_batches)
    method, key, _ = MODELS[model]
    return int(registry.METHODS[method].defaults[key])


def exponents(table, column: str):
    """log-log slope of ``column`` over n_cells, per model."""
    out = {}
    for model, sub in table.groupby("model"):
        sub = sub[sub[column] > 0]
        if len(sub) >= 2:
            out[model] = float(np.polyfit(np.log(sub["n_cells"]), np.log(sub[column]), 1)[0])
    return out


def figure(table, path: Path) -> None:
    """Seconds per epoch, projected run and peak memory against cells, log-log, one line per model."""
    import pandas as pd
    import plotnine as p9

    long = pd.concat([
        table.assign(what="seconds per epoch (CPU, 2,000 genes)", value=table["s_per_epoch"]),
        table.assign(what="projected run at the released epochs (s)", value=table["projected_s"]),
        table.assign(what="peak memory (GB)", value=table["peak_rss_mb"] / 1024),
    ])
    long["what"] = pd.Categorical(long["what"], categories=long["what"].unique())
    plot = (p9.ggplot(long, p9.aes("n_cells", "value", colour="model"))
            + p9.geom_line() + p9.geom_point()
            + p9.scale_x_log10(breaks=sorted(table["n_cells"].unique()),
                               labels=lambda xs: [f"{x / 1000:g}k" for x in xs])
            + p9.scale_y_log10(labels=lambda ys: [f"{y:g}" for y in ys])
            + p9.facet_wrap("~what", scales="free_y")
            + p9.labs(x="cells", y="", colour="model")
            + p9.theme_bw() + p9.theme(figure_size=(11, 3.6)))
    plot.save(str(path), dpi=150, verbose=False)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n-cells", type=int, nargs="+", default=[10000, 30000, 100000])
    ap.add_argument("--epochs", type=int, default=2, help="timed epochs (after one untimed epoch)")
    ap.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    ap.add_argument("--threads", type=int, default=int(os.environ.get("OMP_NUM_THREADS", "2")))
    ap.add_argument("--out", default="bench_models_scaling.tsv")
    ap.add_argument("--figure", default=None, help="PNG of the scaling curves")
    args = ap.parse_args(argv)
    if args.epochs < 1:
        ap.error(f"--epochs must be at least 1, got {args.epochs}")
    import pandas as pd

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        os.environ.pop("BENCH_CACHE_DIR", None)  # both runs pay the same set-up (no cached clusters)
        for n in args.n_cells:
            data_path = os.path.join(tmp, f"data_{n}.h5ad")
            simulate(n).write_h5ad(data_path)
            for model in args.models:
                timed = args.epochs * TIMED_EPOCH_FACTOR.get(model, 1)
                short = _run(model, data_path, 1, args.threads)
                long = _run(model, data_path, 1 + timed, args.threads)
                per_epoch = max(long["s"] - short["s"], 0.0) / timed
                cpu_per_epoch = max(long["cpu_s"] - short["cpu_s"], 0.0) / timed
                setup = max(short["s"] - per_epoch, 0.0)
                epochs = released_epochs(model, n)
                rows.append({"model": model, "n_cells": n, "threads": args.threads, "timed_epochs": timed,
                             "s_per_epoch": round(per_epoch, 3), "cpu_s_per_epoch": round(cpu_per_epoch, 3),
                             "setup_s": round(setup, 2),
                             "released_epochs": epochs, "projected_s": round(setup + epochs * per_epoch, 1),
                             "peak_rss_mb": round(max(short["peak_rss_mb"], long["peak_rss_mb"]), 1)})
                print("\t".join(f"{k}={v}" for k, v in rows[-1].items()), flush=True)
    table = pd.DataFrame(rows)
    for column in ("s_per_epoch", "setup_s", "peak_rss_mb"):
        slopes = exponents(table, column)
        table[f"exponent_{column}"] = table["model"].map(slopes).round(2)
    out = Path(args.out)
    tmp_out = out.with_name(f".{out.name}.tmp{os.getpid()}")
    table.to_csv(tmp_out, sep="\t", index=False)
    os.replace(tmp_out, out)
    print(table.to_string(index=False))
    if args.figure:
        figure(table, Path(args.figure))


if __name__ == "__main__":
    main()
