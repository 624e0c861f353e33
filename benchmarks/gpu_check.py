"""GPU check: epoch timing of every deep model, full runs on the GPU through the runner, and the
metric set with JAX on the GPU, within one time budget. Run it with ``benchmarks/gpu_check.sh``
(which installs the carried wheels first); README "GPU check" says how.

    python benchmarks/gpu_check.py --device cuda --out DIR              # 100k and 1M cells
    python benchmarks/gpu_check.py --device cpu --cells 2000 --out DIR  # the same, tiny (CI)

Parts, each under its share of ``--budget-s`` (an item that does not fit is recorded as
"skipped: time budget", never overrun):

1. models: for sysVI, scCRAFT, scDREAMER, DAVAE (methods/) and scvi-tools' SCVI and SysVI, at each
   ``--cells`` size, seconds per epoch and peak GPU memory (torch.cuda.max_memory_allocated:
   the data on the device plus training), in fp32 and in bf16-mixed (torch.autocast; Lightning's
   "bf16-mixed" for scvi-tools) where the model has a ``precision`` parameter (the sysVI pair).
   Data: simulated counts (n cells x 2000 genes, 10 cell types, 4 batches nested in 2 systems,
   Poisson around type x batch gene means), generated on the device in row chunks, log-normalised
   there for the models that take lognorm input. Our models: the network, optimizers and training
   step are the module's own (``SysVITrainer``, ``SCCRAFTTrainer``, ``DreamerTrainer``,
   ``DAVAETrainer``, the objects ``integrate`` trains with) with registry defaults; scCRAFT's
   Leiden clusterings (once per dataset, before training) are replaced by the cell types and a
   random split of each into 5 (its triplets need clusters, not these ones). scvi-tools: the
   model's own ``train()`` with a Lightning callback timing each epoch.
   Timing: a warm-up epoch, cut to its first ``--warmup-steps`` minibatches when longer, then one
   timed epoch, cut to ``--max-steps`` minibatches (and to what fits the budget) and extrapolated
   to the full epoch (``extrapolated: true``, ``timed_steps`` of ``steps_per_epoch``); CUDA is
   synchronised before and after. scvi-tools: 2 epochs, each cut to its first 500 minibatches
   (``limit_train_batches``) and extrapolated likewise; the second is the timed one.
2. integrate: one ``python -m methods run`` per proposed model on a small simulated dataset with
   ``--device`` (3 epochs: the run, not the training length, is what is checked), asserting
   status ok, the run record's device and peak_gpu_mb (a number on a GPU, null on the CPU),
   and a numpy float embedding of one row per cell in the run file (``IntegrationResult.check``
   refuses a torch tensor, so a GPU tensor never reaches it).
3. metrics: the full metric set (``metrics.score.score_many``, every metric of the catalog) on
   a synthetic ``--metric-cells`` run (benchmarks/bench_metrics.py), in a fresh process whose JAX
   uses the GPU; the seconds of every step, and JAX's backend.

Writes ``gpu_check.json`` (everything) and ``gpu_check.md`` (tables) to ``--out``; exits 1 when an
item failed (skips do not fail).
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import os
import platform
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

PROPOSED = ("sysvi", "sccraft", "scdreamer", "davae")
SCVI_TOOLS = ("scvi", "sysvi_scvitools")
PRECISIONS = {"sysvi": ("fp32", "bf16-mixed"), "sysvi_scvitools": ("fp32", "bf16-mixed")}
N_GENES, N_TYPES, N_BATCHES = 2000, 10, 4  # batches 0, 1 in system 0; 2, 3 in system 1
INTEGRATE_EPOCHS = {"sysvi": {"max_epochs": 3}, "sccraft": {"max_epochs": 3},
                    "scdreamer": {"epochs": 3}, "davae": {"epochs": 3}}
SHARES = {"models": 0.45, "integrate": 0.2, "metrics": 0.35}  # of --budget-s, in this order
SCVI_TOOLS_MAX_STEPS = 500  # per epoch: scvi-tools runs 2 epochs (warm-up, timed) of this many at most
SKIPPED_TIME = "skipped: time budget"
TARGET_S_PER_EPOCH, TARGET_CELLS = 5.0, 1_000_000  # target on an H100, proposed models


class Clock:
    """Deadlines of the parts within one budget; a part's unused time passes to the next."""

    def __init__(self, budget_s: float) -> None:
        self.start, self.budget_s = time.monotonic(), budget_s
        self.ends: dict[str, float] = {}
        share = 0.0
        for part, frac in SHARES.items():
            share += frac
            self.ends[part] = self.start + share * budget_s

    def left(self, part: str) -> float:
        return self.ends[part] - time.monotonic()


def sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def gpu_mb(device, peak: bool) -> float | None:
    import torch

    if device.type != "cuda":
        return None
    value = torch.cuda.max_memory_allocated(device) if peak else torch.cuda.memory_allocated(device)
    return round(value / 2**20, 1)


# ----------------------------------------------------------------------------- data on the device
def simulated_counts(n: int, device, seed: int = 0, chunk_rows: int = 65536):
    """(counts float32 n x N_GENES, cell types, batches), drawn on ``device`` in row chunks."""
    import torch

    gen = torch.Generator(device=device)
    gen.manual_seed(seed)
    kw = {"generator": gen, "device": device}
    base = torch.exp(torch.randn(N_GENES, **kw) - 1.0)  # gene means ~ lognormal, ~1,500 counts/cell
    type_fc = torch.exp(torch.randn(N_TYPES, N_GENES, **kw) * (torch.rand(N_TYPES, N_GENES, **kw) < 0.2))
    batch_fc = torch.exp(0.3 * torch.randn(N_BATCHES, N_GENES, **kw) * (torch.rand(N_BATCHES, N_GENES, **kw) < 0.5))
    types = torch.randint(0, N_TYPES, (n,), **kw)
    batches = torch.randint(0, N_BATCHES, (n,), **kw)
    size = torch.exp(0.3 * torch.randn(n, **kw))
    counts = torch.empty(n, N_GENES, device=device)
    for s in range(0, n, chunk_rows):
        rate = base * type_fc[types[s:s + chunk_rows]] * batch_fc[batches[s:s + chunk_rows]]
        counts[s:s + chunk_rows] = torch.poisson(rate * size[s:s + chunk_rows, None], generator=gen)
    return counts, types, batches


def log1p_normalize_(counts, target_sum: float, chunk_rows: int = 65536):
    """log1p(counts / library * target_sum) in place, in row chunks (cells without counts stay 0)."""
    for s in range(0, counts.shape[0], chunk_rows):
        block = counts[s:s + chunk_rows]
        lib = block.sum(1, keepdim=True).clamp_min(1.0)
        block.mul_(target_sum / lib).log1p_()
    return counts


# ----------------------------------------------------------------------------- our models
def build_trainer(model: str, n: int, precision: str, device):
    """(trainer, modules to put in train mode) of ``model`` on n simulated cells, as integrate builds it."""
    import torch

    from methods import registry
    from methods.nn.training import autocast, one_hot, seed_all

    gen = seed_all(0)
    counts, types, batches = simulated_counts(n, device)
    if model == "sysvi":
        from methods import sysvi

        cfg = sysvi.parse_params(registry.merge_params("sysvi", {"precision": precision}))
        X = log1p_normalize_(counts, 1e4)
        sys_codes = batches // 2
        batch_oh = one_hot(batches, N_BATCHES, device=device)  # batches nested in systems: kept ("auto")
        net = sysvi.build_sysvae(X, batch_oh, sys_codes, 2, cfg, gen)
        return sysvi.SysVITrainer(net, X, batch_oh, sys_codes, 2, gen, autocast(device, precision)), [net]
    if model == "sccraft":
        from methods import sccraft

        p = sccraft.check_params(registry.merge_params("sccraft", {"warmup_epochs": 0}))  # adversary on
        X = log1p_normalize_(counts, 1e4)
        high = types * 5 + torch.randint(0, 5, types.shape, device=device)
        vae = sccraft.SCCRAFTVAE(N_GENES, N_BATCHES, p["n_latent"]).to(device)
        disc = sccraft.make_discriminator(p["n_latent"], N_BATCHES).to(device)
        triplet_gen = torch.Generator(device=device)
        triplet_gen.manual_seed(1)
        return sccraft.SCCRAFTTrainer(vae, disc, X, batches, types, high, p, gen, triplet_gen), [vae, disc]
    if model == "scdreamer":
        from methods import scdreamer

        cfg = scdreamer.parse_params(registry.merge_params("scdreamer", {}), "scdreamer", supervised=False)
        data = scdreamer.data_from_device_counts(counts, batches, N_BATCHES, cfg)
        del counts
        net = scdreamer.build_net(N_GENES, N_BATCHES, 0, cfg).to(device)
        return scdreamer.DreamerTrainer(net, data, cfg, gen), [net]
    if model == "davae":
        from methods import davae

        p = davae._check_params(registry.merge_params("davae", {}))
        X = log1p_normalize_(counts, p["target_sum"])
        net = davae.DACVAE(N_GENES, N_BATCHES, p["hidden_layers"], p["n_latent"], p["dropout"],
                           p["classifier_dropout"]).to(device)
        weight = (batches == 0).to(torch.float32)  # the first batch is the reference
        return davae.DAVAETrainer(net, X, batches, one_hot(batches, N_BATCHES, device=device), weight, p, gen), [net]
    raise ValueError(f"unknown model {model}")


def time_trainer(trainer, modules, device, warmup_steps: int, max_steps: int, seconds: float) -> dict[str, Any]:
    """A warm-up epoch (its first ``warmup_steps`` minibatches at most), then one timed epoch of at
    most ``max_steps`` minibatches, fewer when the warm-up's pace says they would not fit in
    ``seconds``; the timed part is extrapolated to the whole epoch."""
    def run_steps(minibatches, epoch: int) -> float:
        """Seconds of these minibatches' steps and the epoch's end, the device synchronised."""
        sync(device)
        t0 = time.perf_counter()
        for idx in minibatches:
            trainer.step(idx)
        trainer.end_epoch(epoch)
        sync(device)
        return time.perf_counter() - t0

    for m in modules:
        m.train()
    warm = trainer.epoch_minibatches()[:warmup_steps]
    warm_s = run_steps(warm, 0)
    plan = trainer.epoch_minibatches()
    steps = len(plan)
    fit = int(max(seconds, 0) / max(warm_s / max(len(warm), 1), 1e-6))
    timed = plan[:max(1, min(steps, max_steps, fit))]
    timed_s = run_steps(timed, 1)
    return {"s_per_epoch": round(timed_s * steps / len(timed), 4), "steps_per_epoch": steps,
            "timed_steps": len(timed), "warmup_steps": len(warm), "extrapolated": len(timed) < steps,
            "warmup_s": round(warm_s, 3), "timed_s": round(timed_s, 3)}


# ----------------------------------------------------------------------------- scvi-tools
def time_scvi_tools(model: str, n: int, precision: str, device, max_steps: int) -> dict[str, Any]:
    """scvi-tools' own train(): 2 epochs of at most ``max_steps`` minibatches, the second timed."""
    import anndata as ad
    import pandas as pd
    import scvi
    import torch
    from lightning.pytorch.callbacks import Callback

    from methods import registry

    class EpochTimer(Callback):
        def __init__(self) -> None:
            self.seconds: list[float] = []
            self.steps = self.full_steps = 0

        def on_train_start(self, trainer, pl_module) -> None:
            self.full_steps = len(trainer.train_dataloader)
            self.steps = int(trainer.num_training_batches)

        def on_train_epoch_start(self, trainer, pl_module) -> None:
            sync(device)
            self.t0 = time.perf_counter()

        def on_train_epoch_end(self, trainer, pl_module) -> None:
            sync(device)
            self.seconds.append(time.perf_counter() - self.t0)

    counts, types, batches = simulated_counts(n, device)
    b = batches.cpu().numpy()
    obs = pd.DataFrame({"batch": pd.Categorical([f"B{i}" for i in b]),
                        "system": pd.Categorical([f"S{i // 2}" for i in b])}, index=[f"c{i}" for i in range(n)])
    scvi.settings.seed = 0
    if model == "scvi":
        from methods.scvi_models import CONFIGS

        params = registry.merge_params("scvi", {})
        adata = ad.AnnData(X=counts.cpu().numpy(), obs=obs)
        scvi.model.SCVI.setup_anndata(adata, batch_key="batch")
        net = scvi.model.SCVI(adata, **CONFIGS[params["config"]]["model"])
        plan = {"max_kl_weight": float(params["max_kl_weight"]), **CONFIGS[params["config"]]["plan"]}
        batch_size, lightning_precision = int(params["batch_size"]), "32-true"
    else:
        from scvi.external import SysVI

        from methods.sysvi_scvitools import LIGHTNING_PRECISION, PRIORS

        p = registry.merge_params("sysvi_scvitools", {"precision": precision})
        adata = ad.AnnData(X=log1p_normalize_(counts, 1e4).cpu().numpy(), obs=obs)
        SysVI.setup_anndata(adata, batch_key="system", categorical_covariate_keys=["batch"])
        net = SysVI(adata, prior=PRIORS[p["prior"]], n_prior_components=int(p["n_prior_components"]),
                    n_latent=int(p["n_latent"]), n_hidden=int(p["n_hidden"]), n_layers=int(p["n_layers"]),
                    dropout_rate=float(p["dropout"]))
        plan = {"lr": float(p["lr"]), "max_kl_weight": float(p["kl_weight"]),
                "z_distance_cycle_weight": float(p["cycle_weight"])}
        batch_size, lightning_precision = int(p["batch_size"]), LIGHTNING_PRECISION[precision]
    del counts
    if device.type == "cuda":  # the data now live on the host, as scvi-tools keeps them
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    timer = EpochTimer()
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)  # banners and tips, per train()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Lightning's hints (srun, num_workers) would bury the summary lines
        net.train(max_epochs=2, batch_size=batch_size, plan_kwargs=plan, callbacks=[timer],
                  accelerator="gpu" if device.type == "cuda" else "cpu", devices=1, precision=lightning_precision,
                  enable_progress_bar=False, limit_train_batches=max_steps)
    steps, full = min(timer.steps, timer.full_steps), timer.full_steps
    return {"s_per_epoch": round(timer.seconds[-1] * full / max(steps, 1), 4), "steps_per_epoch": full,
            "timed_steps": steps, "warmup_steps": steps, "extrapolated": steps < full,
            "warmup_s": round(timer.seconds[0], 3), "timed_s": round(timer.seconds[-1], 3)}


def model_rows(args, device, clock: Clock, importable: dict[str, str]) -> list[dict[str, Any]]:
    import torch

    # the proposed models (the target) at every size first, then scvi-tools' models
    jobs = [(n, m, prec) for group in (PROPOSED, SCVI_TOOLS) for n in args.cells for m in group
            for prec in PRECISIONS.get(m, ("fp32",))]
    rows = []
    for i, (n, model, precision) in enumerate(jobs):
        row = {"model": model, "n_cells": n, "n_genes": N_GENES, "precision": precision}
        left = clock.left("models")
        missing = importable.get("scvi") if model in SCVI_TOOLS else None
        if missing:
            row["status"] = f"skipped: {missing}"
        elif left < 5:
            row["status"] = SKIPPED_TIME
        else:
            t0 = time.perf_counter()
            try:
                if device.type == "cuda":
                    torch.cuda.reset_peak_memory_stats(device)
                if model in SCVI_TOOLS:
                    row.update(time_scvi_tools(model, n, precision, device, min(args.max_steps, SCVI_TOOLS_MAX_STEPS)))
                else:
                    trainer, modules = build_trainer(model, n, precision, device)
                    row["data_gpu_mb"] = gpu_mb(device, peak=False)
                    # this item's share of what is left, for the timed epoch (the warm-up is extra)
                    row.update(time_trainer(trainer, modules, device, args.warmup_steps, args.max_steps,
                                            0.5 * left / (len(jobs) - i)))
                    del trainer, modules
                row["peak_gpu_mb"] = gpu_mb(device, peak=True)
                row["status"] = "ok"
            except Exception as exc:  # noqa: BLE001 - recorded, the check goes on
                row["status"] = f"failed: {type(exc).__name__}: {exc}"[:500]
            row["wall_s"] = round(time.perf_counter() - t0, 2)
            gc.collect()
            if device.type == "cuda":
                torch.cuda.empty_cache()
        print(f"gpu_check: {model} {n} cells {precision}: {row.get('s_per_epoch', '-')} s/epoch, "
              f"{row['status']}", flush=True)
        rows.append(row)
    return rows


# ----------------------------------------------------------------------------- runs through the runner
def write_dataset(path: Path, n: int) -> None:
    """A preprocessed dataset file (docs/contracts.md) of n simulated cells x N_GENES."""
    import anndata as ad
    import pandas as pd
    import scipy.sparse as sp
    import torch

    counts, types, batches = simulated_counts(n, torch.device("cpu"), seed=1)
    b, t = batches.numpy(), types.numpy()
    obs = pd.DataFrame({"batch": pd.Categorical([f"S{i // 2}B{i % 2}" for i in b]),
                        "label": pd.Categorical([f"T{i}" for i in t]),
                        "system": pd.Categorical([f"S{i // 2}" for i in b])}, index=[f"c{i}" for i in range(n)])
    data = ad.AnnData(X=sp.csr_matrix(log1p_normalize_(counts.clone(), 1e4).numpy()), obs=obs)
    data.layers["counts"] = sp.csr_matrix(counts.numpy())
    data.var_names = [f"g{i}" for i in range(N_GENES)]
    data.write_h5ad(path)


def integrate_rows(args, clock: Clock, workdir: Path) -> list[dict[str, Any]]:
    import anndata as ad

    data_path = workdir / "integrate_data.h5ad"
    write_dataset(data_path, args.integrate_cells)
    rows = []
    for model in PROPOSED:
        row = {"model": model, "n_cells": args.integrate_cells, "params": INTEGRATE_EPOCHS[model]}
        left = clock.left("integrate")
        if left < 10:
            row["status"] = SKIPPED_TIME
            rows.append(row)
            continue
        out = workdir / f"run_{model}.h5ad"
        cmd = [sys.executable, "-m", "methods", "run", "--data", str(data_path), "--out", str(out),
               "--method", model, "--params", json.dumps(INTEGRATE_EPOCHS[model]), "--device", args.device,
               "--threads", str(args.threads)]
        t0 = time.perf_counter()
        try:
            proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=left,
                                  env={**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"})
            row["wall_s"] = round(time.perf_counter() - t0, 2)
            if proc.returncode != 0 or not out.exists():
                raise RuntimeError(f"exit {proc.returncode}: {(proc.stderr or proc.stdout)[-400:]}")
            run = ad.read_h5ad(out)
            record = json.loads(run.uns["run_json"])
            row.update({k: record.get(k) for k in ("status", "error", "device", "peak_gpu_mb", "integrate_s", "epochs")})
            row["status"] = check_run(record, run, args.device, args.integrate_cells)
        except subprocess.TimeoutExpired:
            row["status"] = SKIPPED_TIME
        except Exception as exc:  # noqa: BLE001
            row["status"] = f"failed: {type(exc).__name__}: {exc}"[:500]
        print(f"gpu_check: integrate {model} on {args.device}: {row['status']}", flush=True)
        rows.append(row)
    return rows


def check_run(record: dict, run, device: str, n_cells: int) -> str:
    """"ok", or "failed: ..." naming the first broken expectation of a run on ``device``."""
    if record.get("status") != "ok":
        return f"failed: run status {record.get('status')}: {record.get('error')}"[:500]
    if record.get("device") != device:
        return f"failed: run record device {record.get('device')!r}, expected {device!r}"
    peak = record.get("peak_gpu_mb")
    if device.startswith("cuda") and not (isinstance(peak, (int, float)) and peak > 0):
        return f"failed: run record peak_gpu_mb {peak!r} on {device}"
    if not device.startswith("cuda") and peak is not None:
        return f"failed: run record peak_gpu_mb {peak!r} on the CPU (expected null)"
    emb = run.obsm.get("X_emb")
    if not isinstance(emb, np.ndarray) or emb.shape[0] != n_cells or not np.issubdtype(emb.dtype, np.floating):
        return f"failed: embedding is {type(emb).__name__} {getattr(emb, 'shape', '')}, expected a float numpy array"
    return "ok"


# ----------------------------------------------------------------------------- metrics
def metric_rows(args, clock: Clock, workdir: Path) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    from bench_metrics import run_child, write_synthetic

    from metrics.catalog import OPT_IN, metric_info

    names = sorted(metric_info())
    left = clock.left("metrics")
    if left < 20:
        return [{"metric": m, "status": SKIPPED_TIME} for m in names], {"status": SKIPPED_TIME}
    data_path, run_path = write_synthetic(workdir, args.metric_cells)
    env = {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
           "XLA_PYTHON_CLIENT_PREALLOCATE": "false"}  # JAX beside torch's cache: allocate as needed
    if args.device.startswith("cuda"):
        env["JAX_PLATFORMS"] = "cuda"  # fail rather than fall back to the CPU
    cmd = [sys.executable, str(REPO / "benchmarks" / "bench_metrics.py"), "--child", str(data_path),
           str(run_path), str(workdir / "metrics.json"), "--options",
           json.dumps({"n_jobs": min(args.threads, 8), "extra_metrics": sorted(OPT_IN)})]  # every metric
    rec, tree_peak = run_child(cmd, env, int(left))
    summary = {"n_cells": args.metric_cells, "wall_s": rec.get("wall_s"), "peak_rss_mb": rec.get("peak_rss_mb"),
               "jax_backend": rec.get("jax_backend"), "timing": rec.get("timing", {}),
               "status": "ok" if rec.get("status") == "ok" else f"failed: {rec.get('error', '')}"[:800]}
    if "timed out" in str(rec.get("error", "")):
        summary["status"] = SKIPPED_TIME
    values, reasons, timing = rec.get("metrics", {}), rec.get("na_reasons", {}), rec.get("timing", {})
    rows = []
    for m in names:
        row = {"metric": m, "n_cells": args.metric_cells, "seconds": timing.get(m), "value": values.get(m)}
        if summary["status"] != "ok":
            row["status"] = summary["status"]
        elif m in values and values[m] is not None:
            row["status"] = "ok"
        elif m in reasons:
            row["status"], row["na_reason"] = "ok", reasons[m]  # NA by design on this data (e.g. opt-in)
        else:
            row["status"] = "failed: not in metrics.json"
        rows.append(row)
    print(f"gpu_check: metrics on {args.metric_cells} cells (JAX {summary['jax_backend']}): "
          f"{summary['wall_s']} s, {summary['status']}", flush=True)
    return rows, summary


# ----------------------------------------------------------------------------- output
def environment(device) -> dict[str, Any]:
    import torch

    env = {"python": platform.python_version(), "torch": torch.__version__, "cuda": torch.version.cuda,
           "device": str(device), "host": platform.node()}
    if device.type == "cuda":
        env["gpu"] = torch.cuda.get_device_name(device)
        env["gpu_memory_mb"] = round(torch.cuda.get_device_properties(device).total_memory / 2**20)
    return env


def target(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Whether each proposed model's 1M-cell epoch took at most 5 s (fastest precision; None: not timed)."""
    met = {}
    for model in PROPOSED:
        times = [r["s_per_epoch"] for r in rows
                 if r["model"] == model and r["n_cells"] == TARGET_CELLS and r["status"] == "ok"]
        met[model] = (min(times) <= TARGET_S_PER_EPOCH) if times else None
    return {"s_per_epoch": TARGET_S_PER_EPOCH, "n_cells": TARGET_CELLS, "met": met}


def markdown(result: dict[str, Any]) -> str:
    env = result["environment"]
    lines = [f"# GPU check ({env.get('gpu', env['device'])}, torch {env['torch']}, CUDA {env['cuda']})", "",
             f"Budget {result['budget_s']} s, took {result['wall_s']} s. Target: a proposed model's "
             f"{TARGET_CELLS:,}-cell epoch within {TARGET_S_PER_EPOCH:g} s: "
             + ", ".join(f"{m} {'not timed' if ok is None else ('met' if ok else 'missed')}"
                         for m, ok in result["target"]["met"].items()) + ".", "",
             "## Seconds per epoch", "",
             "| model | n_cells | precision | s/epoch | peak GPU MB | timed steps | status |",
             "|---|---|---|---|---|---|---|"]
    for r in result["models"]:
        steps = f"{r['timed_steps']}/{r['steps_per_epoch']}" if "timed_steps" in r else ""
        lines.append(f"| {r['model']} | {r['n_cells']} | {r['precision']} | {r.get('s_per_epoch', '')} | "
                     f"{r.get('peak_gpu_mb') or ''} | {steps} | {r['status']} |")
    lines += ["", "## One run per proposed model through the runner", "",
              "| model | n_cells | device | peak GPU MB | integrate s | status |", "|---|---|---|---|---|---|"]
    for r in result["integrate"]:
        lines.append(f"| {r['model']} | {r['n_cells']} | {r.get('device', '')} | {r.get('peak_gpu_mb') or ''} | "
                     f"{r.get('integrate_s', '')} | {r['status']} |")
    m = result["metrics_summary"]
    lines += ["", f"## Metrics on {m.get('n_cells', '')} cells (JAX backend {m.get('jax_backend')}, "
              f"{m.get('wall_s')} s in all)", "", "| metric | seconds | value | status |", "|---|---|---|---|"]
    for r in result["metrics"]:
        value = "NA" if r.get("na_reason") else ("" if r.get("value") is None else f"{r['value']:.4g}")
        lines.append(f"| {r['metric']} | {r.get('seconds') if r.get('seconds') is not None else ''} | {value} | "
                     f"{r['status']} |")
    shared = {k: v for k, v in m.get("timing", {}).items() if k not in {r["metric"] for r in result["metrics"]}}
    if shared:
        lines += ["", "A metric without seconds of its own is computed in these shared steps (s): "
                  + ", ".join(f"{k} {v}" for k, v in shared.items())]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda", help="cuda (default) or cpu")
    ap.add_argument("--cells", type=int, nargs="+", default=[100_000, 1_000_000], help="sizes for epoch timing")
    ap.add_argument("--out", default=os.environ.get("OUT") or "results/gpu_check")
    ap.add_argument("--budget-s", type=float, default=400.0,
                    help="wall-clock budget of all parts (gpu_check.sh adds ~1 min: wheels, imports)")
    ap.add_argument("--max-steps", type=int, default=1000, help="minibatches of a timed epoch at most")
    ap.add_argument("--warmup-steps", type=int, default=200, help="minibatches of the warm-up epoch at most")
    ap.add_argument("--integrate-cells", type=int, default=None, help="default: min(5000, smallest --cells)")
    ap.add_argument("--metric-cells", type=int, default=None, help="default: min(100000, smallest --cells)")
    ap.add_argument("--threads", type=int, default=int(os.environ.get("OMP_NUM_THREADS", "0")) or os.cpu_count())
    ap.add_argument("--skip", default="", help="parts that cannot run, as gpu_check.sh's probe gives them: "
                    "'part=reason;...' (parts scvi, runner, metrics)")
    args = ap.parse_args(argv)
    args.integrate_cells = args.integrate_cells or min(5000, min(args.cells))
    args.metric_cells = args.metric_cells or min(100_000, min(args.cells))

    import torch

    from methods.nn.training import pick_device

    device = pick_device(args.device)
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    clock = Clock(args.budget_s)
    skipped = {p.split("=", 1)[0]: p.split("=", 1)[1] for p in args.skip.split(";") if "=" in p}
    result: dict[str, Any] = {"environment": environment(device), "budget_s": args.budget_s,
                              "cells": args.cells, "max_steps": args.max_steps, "warmup_steps": args.warmup_steps,
                              "protocol": (f"our models: a warm-up epoch (its first {args.warmup_steps} minibatches at "
                                           f"most), then one epoch timed on its first {args.max_steps} minibatches at "
                                           "most (fewer when the budget says so), extrapolated to the whole epoch; "
                                           "scvi-tools: train() for 2 epochs of at most "
                                           f"{min(args.max_steps, SCVI_TOOLS_MAX_STEPS)} minibatches, the second "
                                           "timed and extrapolated; CUDA synchronised around each timing"),
                              "not_importable": skipped}
    result["models"] = model_rows(args, device, clock, skipped)
    with tempfile.TemporaryDirectory(prefix="gpu_check_") as tmp:
        if "runner" in skipped:
            result["integrate"] = [{"model": m, "n_cells": args.integrate_cells,
                                    "status": f"skipped: {skipped['runner']}"} for m in PROPOSED]
        else:
            result["integrate"] = integrate_rows(args, clock, Path(tmp))
        if "metrics" in skipped:
            from metrics.catalog import metric_info

            result["metrics"] = [{"metric": m, "status": f"skipped: {skipped['metrics']}"} for m in sorted(metric_info())]
            result["metrics_summary"] = {"status": f"skipped: {skipped['metrics']}"}
        else:
            result["metrics"], result["metrics_summary"] = metric_rows(args, clock, Path(tmp))
    result["target"] = target(result["models"])
    result["wall_s"] = round(time.monotonic() - clock.start, 1)
    (out / "gpu_check.json").write_text(json.dumps(result, indent=1, default=str))
    (out / "gpu_check.md").write_text(markdown(result))
    print(f"gpu_check: wrote {out / 'gpu_check.json'} and {out / 'gpu_check.md'} ({result['wall_s']} s)")
    items = result["models"] + result["integrate"] + result["metrics"]
    failed = [i for i in items if str(i.get("status", "")).startswith("failed")]
    for item in failed:
        print(f"gpu_check: FAILED {item.get('model') or item.get('metric')}: {item['status']}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
