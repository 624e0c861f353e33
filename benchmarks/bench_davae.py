"""DAVAE as released (scbean 0.5.6) beside our port (methods/davae.py) on the same inputs.

Installs scbean 0.5.6 (``--no-deps``) with the current TensorFlow and tf-keras (``RELEASED_ENV``,
pinned; ``TF_USE_LEGACY_KERAS=1``) in a virtual environment of its own (``--env``, reused when it
has these pins), applies the smallest patches that let the released code run there (``PATCHES``,
printed; none changes the model), then for each dataset and seed trains

- the released code: ``scbean.tools.davae_preprocessing`` on the per-batch counts, then
  ``scbean.model.davae.fit_integration`` with its released defaults (mode DACVAE, 20 epochs,
  batch 128, lambda 1, hidden layers [128, 64, 32, 5]), in a subprocess of that environment;
- our port with the registry defaults, through the project's API, on the same matrix (its
  input, log1p(CPM) computed from the counts, is compared with scbean's preprocessed matrix),

and scores both embeddings and the unintegrated PCA with the project's scIB metric set. The
printed table gives the mean +- sd over seeds of each metric, the total loss at the first and the
last epoch (epoch means), the residual variance s^2 of the reconstruction term at the first and
the last epoch (epoch mean of the per-minibatch s^2; for the released code the training step
also returns it, computed from the same forward pass, which changes nothing in training) and the
training seconds per epoch (total / epochs; the released one includes TensorFlow's graph tracing).
Both run on the CPU with ``--threads`` threads.

Inputs: the datasets of config/config.yaml named by ``--datasets`` (default ``sim_common3`` and
``sim_rare``), simulated and preprocessed as the pipeline does (QC, 1000 HVGs, PCA). scbean
receives each batch's counts of the HVGs detected in every batch (so its per-batch gene filter
drops nothing and both implementations see the same genes; the count is printed), the first
batch as its reference dataset. scbean's ``davae_preprocessing`` keeps ``n_top_genes`` (default
2000) genes and raises IndexError when fewer genes are detected in every batch; it is given that
number of genes, so it keeps them all.

    python benchmarks/bench_davae.py --seeds 0 1 2 --threads 1 --out bench_davae.tsv

First call: installs ~3 GB into ``--env`` (default
~/.cache/scintegrate-bench/scbean-env). Not a test: tests/test_bench_davae.py checks the patching
and the table without TensorFlow.
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
DEFAULT_ENV = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "scintegrate-bench" / "scbean-env"
SCBEAN = "scbean==0.5.6"
# TensorFlow / tf-keras current at the time of writing; the rest as the project's constraints.txt
# so the preprocessing libraries behave as in the pipeline. scbean's own pins (tensorflow 2.4,
# keras 2.3.1) need Python <= 3.8, hence --no-deps; seaborn is imported by scbean.tools.
RELEASED_ENV = ["tensorflow==2.21.0", "tf-keras==2.21.0", "scanpy==1.11.5", "anndata==0.12.19",
                "seaborn==0.13.2", "numpy==2.4.6", "scipy==1.17.1", "pandas==2.3.3", "scikit-learn==1.9.1"]
ENV_MARKER = "scintegrate-bench-scbean.json"

# (file under the scbean package, text as released, replacement, why). Each must match once.
PATCHES = [
    ("model/__init__.py", "from .visgp import VISGP\n",
     "try:\n    from .visgp import VISGP\nexcept ImportError:  # bench_davae: visgp needs packages DAVAE does not use\n"
     "    VISGP = None\n",
     "guard the visgp import: it needs fastlmmclib and tensorflow_probability, which DAVAE does not use"),
    ("model/davae.py", "optimizers.Adam(lr=0.01)", "optimizers.legacy.Adam(lr=0.01)",
     "Adam(lr=0.01) -> legacy.Adam(lr=0.01): current Keras' Adam drops `lr` with only a warning and "
     "trains at its default 0.001; the legacy Adam still takes `lr` (the learning rate used is checked)"),
    ("model/davae.py", "orig_data = adata.X.A\n", "orig_data = adata.X.toarray()\n",
     "adata.X.A -> adata.X.toarray(): current scipy sparse matrices have no `.A`"),
]
SCIB = ["nmi", "ari", "asw_label", "clisi", "isolated_label_asw", "isolated_label_f1",
        "asw_batch", "ilisi", "kbet", "graph_connectivity", "pcr_comparison"]
TRAINING = ["loss_first", "loss_last", "s2_first", "s2_last", "s_per_epoch"]
IMPLEMENTATIONS = {"pca": "unintegrated PCA", "released": "scbean 0.5.6 (released)", "port": "port (methods/davae.py)"}


class PatchError(RuntimeError):
    """The released source does not look as expected (another scbean version?)."""


def patch_scbean(pkg_dir: str | Path) -> list[str]:
    """Apply ``PATCHES`` to the scbean package in ``pkg_dir`` (idempotent); one line per patch."""
    pkg_dir = Path(pkg_dir)
    lines = []
    for rel, old, new, why in PATCHES:
        path = pkg_dir / rel
        if not path.is_file():
            raise PatchError(f"{path}: missing; is {SCBEAN} installed in this environment?")
        text = path.read_text()
        if new in text:  # (the replacement may contain the released text: test it first)
            lines.append(f"{rel}: {why} (already applied)")
            continue
        if text.count(old) == 0:
            raise PatchError(f"{path}: expected text {old.strip()!r} not found; not {SCBEAN}?")
        tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
        tmp.write_text(text.replace(old, new))
        os.replace(tmp, path)
        lines.append(f"{rel}: {why} ({text.count(old)}x)")
    return lines


def ensure_env(env: Path) -> Path:
    """The environment's python: created and installed unless its marker names these pins."""
    python = env / "bin" / "python"
    marker = env / ENV_MARKER
    want = {"pins": RELEASED_ENV, "scbean": SCBEAN}
    if python.exists() and marker.exists() and json.loads(marker.read_text()) == want:
        return python
    print(f"installing the released DAVAE's environment in {env} (~3 GB, several minutes)", flush=True)
    pip = [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    steps = [[sys.executable, "-m", "venv", str(env)]] if not python.exists() else []
    for cmd in steps + [pip + RELEASED_ENV, pip + ["--no-deps", SCBEAN]]:
        if subprocess.run(cmd).returncode != 0:
            raise SystemExit(f"installing the released DAVAE's environment in {env} failed at `{' '.join(cmd)}` "
                             "(its output is above); fix that or pass another folder with --env")
    marker.write_text(json.dumps(want))
    return python


def scbean_dir(python: Path) -> Path:
    """Folder of the scbean package in the environment of ``python`` (found without importing it)."""
    out = subprocess.run([str(python), "-c", "import importlib.util as u; "
                          "print(u.find_spec('scbean').submodule_search_locations[0])"],
                         check=True, capture_output=True, text=True)
    return Path(out.stdout.strip())


# --------------------------------------------------------------------------------------------
# The released code, run by the environment's python (no project imports here).

def released_worker(data_path: str, out_path: str, seed: int, threads: int) -> None:
    """Train scbean's DACVAE on ``data_path`` (counts, obs batch) and save what the table needs."""
    os.environ["TF_USE_LEGACY_KERAS"] = "1"
    from importlib import metadata

    import anndata as ad
    import scipy.sparse as sp
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(threads)
    tf.keras.utils.set_random_seed(seed)
    from scbean.model import davae
    from scbean.tools import utils

    adata = ad.read_h5ad(data_path)
    batches = list(adata.obs["batch"].cat.categories)
    per_batch = [ad.AnnData(X=sp.csr_matrix(adata[adata.obs["batch"] == b].X), obs=adata[adata.obs["batch"] == b].obs[[]])
                 for b in batches]
    for part in per_batch:
        part.var_names = adata.var_names
    pre = utils.davae_preprocessing(per_batch, n_top_genes=adata.n_vars)
    record: dict = {}
    train = davae.DACVAE.train

    class ResidualVariance(tf.keras.callbacks.Callback):
        """Epoch mean of the per-minibatch s^2 (returned by the training step, below)."""

        def on_epoch_begin(self, epoch, logs=None):
            self.batches = []

        def on_train_batch_end(self, batch, logs=None):
            self.batches.append(float(logs["s2"]))

        def on_epoch_end(self, epoch, logs=None):
            record.setdefault("s2", []).append(float(np.mean(self.batches)))

    def recorded_train(net, *args, **kwargs):
        model = net.dann_vae
        compute_metrics, fit = model.compute_metrics, model.fit

        def with_s2(x, y, y_pred, sample_weight):
            # s^2 as the loss computes it, from the same forward pass: inputs and decoder output
            w = x["inputs_weights"]
            s2 = tf.math.reduce_variance(x["inputs"] * w - y_pred[0] * w)
            return {**compute_metrics(x, y, y_pred, sample_weight), "s2": s2}

        model.compute_metrics = with_s2
        model.fit = lambda *a, **k: fit(*a, callbacks=[ResidualVariance()], **k)
        record["lr"] = float(tf.keras.backend.get_value(net.optimizer.learning_rate))
        t0 = time.perf_counter()
        history = train(net, *args, **kwargs)
        record["train_s"] = time.perf_counter() - t0
        record["loss"] = [float(v) for v in history.history["loss"]]
        return history

    davae.DACVAE.train = recorded_train
    out = davae.fit_integration(pre, batch_num=len(batches), mode="DACVAE")
    X_pre = pre.X.toarray() if sp.issparse(pre.X) else np.asarray(pre.X)
    versions = {name: metadata.version(name) for name in ("tensorflow", "tf-keras", "scanpy", "scbean")}
    np.savez(out_path, obs_names=np.asarray(pre.obs_names, dtype=str), var_names=np.asarray(pre.var_names, dtype=str),
             X_pre=X_pre.astype(np.float32), embedding=np.asarray(out.obsm["X_davae"], dtype=np.float32),
             record=json.dumps({**record, "versions": versions, "epochs": len(record["loss"])}))


# --------------------------------------------------------------------------------------------
# The benchmark (project environment).

def load_dataset(name: str, config_path: Path):
    """The dataset ``name`` of the config, simulated and preprocessed as the pipeline does."""
    import yaml

    from datasets.preprocess import preprocess
    from datasets.simulate import simulate

    config = yaml.safe_load(config_path.read_text())
    entry = config["datasets"].get(name)
    if not entry or "simulate" not in entry:
        raise SystemExit(f"{config_path}: datasets.{name} is not a simulated dataset; pick one with 'simulate:'")
    sim = entry["simulate"]
    raw = simulate(sim["scenario"], seed=sim.get("seed", 1), n_cells=sim.get("n_cells", 4000),
                   n_genes=sim.get("n_genes", 10000))
    pp = {**config.get("preprocess", {}), **entry.get("preprocess", {})}
    return preprocess(raw, name=name, batch_key="batch", label_key="celltype", counts="X", counts_integer=True,
                      n_hvg=pp.get("n_hvg", 2000), min_genes=pp.get("min_genes", 200),
                      min_cells=pp.get("min_cells", 3))


def genes_in_every_batch(adata) -> np.ndarray:
    """Boolean mask of genes with a count in every batch (what scbean's per-batch filter keeps)."""
    import scipy.sparse as sp

    counts = sp.csr_matrix(adata.layers["counts"])
    keep = np.ones(adata.n_vars, dtype=bool)
    for b in adata.obs["batch"].cat.categories:
        keep &= np.asarray((counts[(adata.obs["batch"] == b).to_numpy()] > 0).sum(0)).ravel() > 0
    return keep


def run_released(python: Path, data_path: Path, seed: int, threads: int, workdir: Path) -> dict:
    """One released run in a subprocess of the environment; its saved arrays and record."""
    out = workdir / f"released_seed{seed}.npz"
    env = {**os.environ, "TF_USE_LEGACY_KERAS": "1", "OMP_NUM_THREADS": str(threads),
           "TF_CPP_MIN_LOG_LEVEL": "2", "CUDA_VISIBLE_DEVICES": ""}
    log = workdir / f"released_seed{seed}.log"
    with open(log, "w") as fh:
        proc = subprocess.run([str(python), __file__, "--released-worker", str(data_path), str(out), str(seed),
                               str(threads)], env=env, stdout=fh, stderr=subprocess.STDOUT)
    if proc.returncode != 0:
        raise SystemExit(f"released DAVAE (seed {seed}) failed; its log: {log}\n" + log.read_text()[-3000:])
    saved = np.load(out)
    return {k: saved[k] for k in saved.files if k != "record"} | {"record": json.loads(str(saved["record"]))}


def run_port(adata, seed: int):
    """Our DAVAE with the registry defaults through the project's API."""
    from methods import registry
    from methods.davae import integrate

    return integrate(adata, batch_key="batch", label_key=None, params=registry.merge_params("davae", {}),
                     seed=seed, device="cpu")


def score(data, embeddings: dict[str, np.ndarray], workdir: Path) -> dict[str, dict[str, float]]:
    """scIB metrics of each embedding (project's scorer); {name: {metric: value}}."""
    from datasets import write_h5ad_atomic
    from methods.base import IntegrationResult
    from methods.runner import write_run_file
    from metrics.score import score_many

    data_path = workdir / "data.h5ad"
    write_h5ad_atomic(data, data_path)
    runs, outs = [], []
    for name, emb in embeddings.items():
        runs.append(workdir / f"{name}.run.h5ad")
        outs.append(workdir / f"{name}.metrics.json")
        write_run_file(runs[-1], data, IntegrationResult(embedding=emb),
                       {"method": "davae", "setting": name, "seed": 0, "status": "ok"}, None)
    results = score_many(data_path, runs, outs, options={"metrics": SCIB})
    return {name: res["metrics"] for name, res in zip(embeddings, results)}


def summary_table(rows: list[dict], columns: list[str] | None = None) -> str:
    """Markdown table: per dataset and implementation, mean +- sd over seeds of each column."""
    import pandas as pd

    columns = columns or SCIB + TRAINING
    df = pd.DataFrame(rows)
    head = ["dataset", "implementation", "seeds"] + columns
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    order = {k: i for i, k in enumerate(IMPLEMENTATIONS)}
    groups = sorted(df.groupby(["dataset", "implementation"], sort=False),
                    key=lambda g: (list(df["dataset"].unique()).index(g[0][0]), order.get(g[0][1], 99)))
    for (dataset, impl), sub in groups:
        n_seeds = sub["seed"].nunique()
        cells = [dataset, IMPLEMENTATIONS.get(impl, impl), str(n_seeds) if n_seeds else "-"]
        for col in columns:
            vals = pd.to_numeric(sub[col], errors="coerce").dropna() if col in sub else pd.Series(dtype=float)
            if vals.empty:
                cells.append("")
            elif len(vals) == 1 or vals.std() == 0:
                cells.append(_fmt(vals.mean()))
            else:
                cells.append(f"{_fmt(vals.mean())} +- {_fmt(vals.std(), vals.mean())}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _fmt(value: float, scale: float | None = None) -> str:
    """Two decimals, none from 100 on (``scale``: format as for this value, e.g. an sd as its mean)."""
    return f"{value:.2f}" if abs(value if scale is None else scale) < 100 else f"{value:.0f}"


def bench_dataset(name: str, args, python: Path, workdir: Path) -> list[dict]:
    """Rows (one per implementation and seed) for one dataset."""
    import anndata as ad

    from methods.davae import cpm_log1p

    data = load_dataset(name, args.config)
    keep = genes_in_every_batch(data)
    print(f"{name}: {data.n_obs} cells, {data.n_vars} HVGs of which {int(keep.sum())} detected in every batch "
          f"(scbean's input; n_top_genes = {int(keep.sum())}); reference batch {data.obs['batch'].cat.categories[0]}",
          flush=True)
    sub = data[:, keep].copy()
    released_input = workdir / "released_input.h5ad"
    ad.AnnData(X=sub.layers["counts"], obs=sub.obs[["batch"]], var=sub.var[[]]).write_h5ad(released_input)
    rows, embeddings = [], {"pca": data.obsm["X_pca"]}
    training: dict[str, dict] = {}
    cells = None
    for seed in args.seeds:
        rel = run_released(python, released_input, seed, args.threads, workdir)
        rec = rel["record"]
        if abs(rec["lr"] - 0.01) > 1e-9:
            raise SystemExit(f"released DAVAE trained at learning rate {rec['lr']}, not 0.01: the optimizer patch "
                             "did not take")
        cells = rel["obs_names"]
        port_in = sub[cells, rel["var_names"]].copy()
        diff = float(np.abs(cpm_log1p(port_in.layers["counts"], 1e6) - rel["X_pre"]).max())
        print(f"  seed {seed}: {len(cells)} cells x {len(rel['var_names'])} genes; port input vs scbean's "
              f"preprocessed matrix: max |diff| {diff:.1e}", flush=True)
        res = run_port(port_in, seed)
        embeddings[f"released_{seed}"] = rel["embedding"]
        embeddings[f"port_{seed}"] = res.embedding
        hist_p = res.loss_history
        training[f"released_{seed}"] = _training(rec["loss"], rec["s2"], rec["train_s"] / rec["epochs"])
        training[f"port_{seed}"] = _training(hist_p["loss"], hist_p["residual_variance"], res.extra["s_per_epoch"])
        training[f"released_{seed}"]["input_max_diff"] = diff
        for impl in ("released", "port"):
            print(f"  seed {seed}: {impl}: loss {_fmt(training[f'{impl}_{seed}']['loss_first'])} -> "
                  f"{_fmt(training[f'{impl}_{seed}']['loss_last'])}, s^2 per epoch "
                  f"{training[f'{impl}_{seed}']['s2_per_epoch']}", flush=True)
    scores = score(data[cells].copy(), {k: v if k != "pca" else v[data.obs_names.get_indexer(cells)]
                                       for k, v in embeddings.items()}, workdir)
    for key, metrics in scores.items():
        impl, _, seed = key.partition("_")
        rows.append({"dataset": name, "implementation": impl, "seed": int(seed) if seed else None,
                     "n_cells": len(cells), "n_genes": int(keep.sum()), **metrics, **training.get(key, {})})
    return rows


def _training(loss: list[float], s2: list[float], s_per_epoch: float) -> dict[str, float]:
    return {"loss_first": loss[0], "loss_last": loss[-1], "s2_first": s2[0], "s2_last": s2[-1],
            "s_per_epoch": s_per_epoch, "epochs": len(loss), "s2_per_epoch": " ".join(f"{v:.3g}" for v in s2)}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--released-worker"]:
        released_worker(argv[1], argv[2], int(argv[3]), int(argv[4]))
        return 0
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--datasets", nargs="+", default=["sim_common3", "sim_rare"])
    ap.add_argument("--config", type=Path, default=REPO / "config" / "config.yaml")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--env", type=Path, default=DEFAULT_ENV, help=f"virtual environment (default {DEFAULT_ENV})")
    ap.add_argument("--out", type=Path, help="also write the per-seed rows to this TSV (atomically)")
    args = ap.parse_args(argv)
    sys.path.insert(0, str(REPO))
    import pandas as pd
    import torch

    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    python = ensure_env(args.env)
    print("patches to scbean 0.5.6:", *patch_scbean(scbean_dir(python)), sep="\n  ", flush=True)
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench_davae_") as tmp:
        for name in args.datasets:
            workdir = Path(tmp) / name
            workdir.mkdir()
            rows += bench_dataset(name, args, python, workdir)
    print(summary_table(rows))
    print(f"wall time {time.perf_counter() - t0:.0f} s")
    if args.out:
        tmp_out = args.out.with_name(f".{args.out.name}.tmp{os.getpid()}")
        pd.DataFrame(rows).to_csv(tmp_out, sep="\t", index=False)
        os.replace(tmp_out, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
