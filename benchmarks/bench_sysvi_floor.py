"""Benchmark: where a sysVI training epoch's time goes on CPU, against its compute floor.

At ``--n-cells`` x 2,000 simulated genes, ``--threads`` threads, the registry's sysVI (VampPrior
+ cycle, batch 128), it measures seconds per epoch of:
- ``matmul_warm``: every matrix product of one training step (each linear layer's forward and,
  where the backward pass reaches it, weight and input gradients; in the main pass, the cycle
  pass and the VampPrior's pseudo-inputs), each timed alone with the model's own kernel: the
  arithmetic floor;
- ``matmul_cold``: the same with the caches disturbed before each product, as inside a step,
  where the Adam update and the activations stream ~30 MB between two uses of a weight;
- ``fixed_cost``: the same training code at widths 16 (genes and hidden units), where the
  arithmetic is negligible: Python, dispatch and autograd per operation;
- ``epoch``: a real training epoch (``SysVITrainer``, as ``integrate`` runs it).
Then ``thread_sensitivity``: the largest difference between the embeddings of two trainings that
differ only in the thread count (1 vs ``--threads``), after ``--epochs`` epochs: how far a change
of floating-point summation order alone moves the result (any change to the step's kernels
is one).

    python benchmarks/bench_sysvi_floor.py --n-cells 10000 --threads 2 --epochs 3
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))


def _trainer(adata, params: dict):
    import torch

    from methods import registry, sysvi
    from methods.nn.training import autocast, seed_all

    cfg = sysvi.parse_params(registry.merge_params("sysvi", params))
    dev, gen = torch.device("cpu"), seed_all(0)
    X, codes, systems, batch_oh = sysvi.data_tensors(adata, "batch", cfg, dev)
    model = sysvi.build_sysvae(X, batch_oh, codes, len(systems), cfg, gen)
    model.train()
    return sysvi.SysVITrainer(model, X, batch_oh, codes, len(systems), gen, autocast(dev, "fp32"))


def epoch_seconds(trainer, epochs: int) -> float:
    """Median wall seconds of ``epochs`` training epochs after one warm-up epoch."""
    times = []
    for epoch in range(epochs + 1):
        t0 = time.perf_counter()
        for idx in trainer.epoch_minibatches():
            trainer.step(idx)
        trainer.end_epoch(epoch + 1)
        times.append(time.perf_counter() - t0)
    return float(np.median(times[1:]))


def step_products(trainer) -> list[tuple[tuple[int, int], tuple[int, int], int]]:
    """(input shape, weight shape, products) of every linear layer call of one training step:
    1 (forward), 2 where the backward pass reaches the call (weight gradient), 3 where it also
    needs the input's gradient."""
    from methods.nn.layers import Linear

    calls = []

    def record(module, inputs, output):
        entry = [tuple(inputs[0].shape), tuple(module.weight.shape), 1]
        calls.append(entry)
        if output.requires_grad:
            output.register_hook(lambda grad: entry.__setitem__(2, 3 if inputs[0].requires_grad else 2))

    hooks = [m.register_forward_hook(record) for m in trainer.model.modules() if isinstance(m, Linear)]
    trainer.step(trainer.epoch_minibatches()[0])
    for h in hooks:
        h.remove()
    return [tuple(c) for c in calls]


def matmul_seconds(calls, cold: bool, repeats: int = 20) -> float:
    """Seconds of one step's matrix products (forward, dW, dX), each the median of ``repeats``."""
    import torch

    from methods.nn.layers import ONEDNN_LINEAR

    def mm(a, b_t):  # a @ b_t.T with the kernel the model's Linear uses
        if ONEDNN_LINEAR:
            return torch.ops.mkldnn._linear_pointwise(a, b_t, None, "none", [], "")
        return torch.mm(a, b_t.t())

    flush = torch.zeros(16 * 2**20)  # 64 MB: more than this CPU's share of last-level cache
    total = 0.0
    for x_shape, w_shape, n_products in calls:
        x, w, g = torch.randn(x_shape), torch.randn(w_shape), torch.randn(x_shape[0], w_shape[0])
        operands = [(x, w), (g.t(), x.t()), (g, w.t())][:n_products]  # forward, dW, dX
        for a, b_t in operands:
            times = []
            for _ in range(repeats + 3):
                if cold:
                    flush.add_(1.0)
                t0 = time.perf_counter()
                mm(a, b_t)
                times.append(time.perf_counter() - t0)
            total += float(np.median(times[3:]))
    return total


def thread_sensitivity(adata, epochs: int, threads: int) -> tuple[float, float]:
    """(max |embedding difference|, embedding sd) between trainings at 1 and ``threads`` threads."""
    import torch

    from methods import registry, sysvi

    embs = []
    for t in (1, threads):
        torch.set_num_threads(t)
        res = sysvi.integrate(adata, batch_key="batch", label_key="label", seed=0, device="cpu",
                              params=registry.merge_params("sysvi", {"max_epochs": epochs}))
        embs.append(res.embedding)
    torch.set_num_threads(threads)
    return float(np.abs(embs[0] - embs[1]).max()), float(embs[1].std())


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n-cells", type=int, default=10000)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--epochs", type=int, default=3, help="timed epochs, and epochs of the sensitivity runs")
    ap.add_argument("--repeats", type=int, default=20, help="timings per matrix product (median)")
    ap.add_argument("--out", default="bench_sysvi_floor.tsv")
    args = ap.parse_args(argv)
    import pandas as pd
    import torch
    from bench_sysvi import simulate

    torch.set_num_threads(args.threads)
    adata = simulate(args.n_cells)
    trainer = _trainer(adata, {})
    steps = len(trainer.epoch_minibatches())
    calls = step_products(trainer)
    rows = {"matmul_warm": matmul_seconds(calls, cold=False, repeats=args.repeats) * steps,
            "matmul_cold": matmul_seconds(calls, cold=True, repeats=args.repeats) * steps,
            "fixed_cost": epoch_seconds(_trainer(simulate(args.n_cells, n_genes=16), {"n_hidden": 16}), args.epochs),
            "epoch": epoch_seconds(trainer, args.epochs)}
    diff, sd = thread_sensitivity(adata, args.epochs, args.threads)
    table = pd.DataFrame([{"n_cells": args.n_cells, "threads": args.threads, "steps_per_epoch": steps,
                           "products_per_step": sum(n for *_, n in calls),
                           **{f"{k}_s_per_epoch": round(v, 3) for k, v in rows.items()},
                           "epoch_over_warm_floor": round(rows["epoch"] / rows["matmul_warm"], 2),
                           "thread_sensitivity_max_abs": round(diff, 4), "embedding_sd": round(sd, 3)}])
    table.to_csv(args.out, sep="\t", index=False)
    print(table.T.to_string(header=False))


if __name__ == "__main__":
    main()
