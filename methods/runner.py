"""Run one method on one dataset with one setting and seed, and write the run file.

The run file (``run.h5ad``, docs/contracts.md) is written for every run, successful or
not: a failing method (exception, NaN loss, out of memory, killed) gives ``status=failed``
with the error, so the benchmark goes on and the report shows the failure. With
``strict=True`` the failure is still recorded and the command then exits non-zero.

The method runs in a forked child process. That is how a run that exceeds memory (a
``MemoryError`` under the ``max_mem_mb`` limit, or a kill by the OOM killer) or its time
limit is recorded instead of taking the job down, and how peak RSS of the run itself is
measured. On an attempt after which Snakemake retries, such a run raises ``RetryRun``
instead (methods/attempts.py), so the retry gets the next attempt's memory and time.
"""

from __future__ import annotations

import importlib
import json
import multiprocessing
import os
import platform
import random
import resource
import socket
import subprocess
import sys
import time
import traceback
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from methods import registry
from methods.attempts import (
    OOM_ERROR_PREFIX,
    TIME_ERROR_PREFIX,
    RetryRun,
    is_resource_failure,
    method_time_limit_s,
)
from methods.base import DATASET_FAILED, IntegrationResult, ResultError, killed_by_signal, peak_rss_mb
from methods.settings import base_setting

# The label of a cell without one in a dataset file (datasets/ingest.py, docs/contracts.md).
UNLABELLED = "unknown"
# A run stopped by the study's own limit (config run_time_limit_min): recorded, not retried.
RUN_LIMIT_ERROR_PREFIX = "run time limit"
REPO_ROOT = Path(__file__).resolve().parent.parent
VERSION_PACKAGES = [
    "numpy", "scipy", "pandas", "anndata", "scanpy", "scikit-learn", "torch", "scvi-tools",
    "harmonypy", "scanorama", "bbknn", "scib-metrics", "jax", "snakemake",
]


def package_versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for pkg in VERSION_PACKAGES:
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            pass
    return out


def git_commit() -> str:
    try:
        sha = subprocess.run(["git", "-C", str(REPO_ROOT), "rev-parse", "HEAD"], capture_output=True,
                             text=True, timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(REPO_ROOT), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return sha + ("-dirty" if dirty else "")
    except Exception:  # not a git checkout (e.g. an exported workflow)
        return "unknown"


def resolve_device(device: str, gpu_method: bool) -> str:
    """The device the run uses (the run record's ``device``): ``cpu`` for a method that never uses
    a GPU whatever was asked; ``auto`` -> ``cuda`` when torch sees a GPU; ``cuda`` without a GPU
    is a ``ValueError`` saying what to do (torch's own error named no setting)."""
    if not gpu_method:
        return "cpu"
    if device == "cuda" and not _cuda_available():
        raise ValueError("device 'cuda' was asked for, but torch sees no GPU on this machine: use device: auto "
                         "(the GPU when there is one) or cpu")
    if device != "auto":
        return device
    return "cuda" if _cuda_available() else "cpu"


def _cuda_available() -> bool:
    """Whether torch sees a GPU, asked without initialising CUDA in this process: the method runs in
    a forked child, and torch's default check (cudaGetDeviceCount, i.e. cuInit) "poisons" fork, so
    the child's first CUDA call would fail ("Cannot re-initialize CUDA in forked subprocess").
    PYTORCH_NVML_BASED_CUDA_CHECK makes torch count GPUs through NVML instead (torch's documented
    fork-safe check)."""
    os.environ["PYTORCH_NVML_BASED_CUDA_CHECK"] = "1"
    try:
        import torch

        return torch.cuda.is_available()
    except ImportError:
        return False


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    os.environ["PYTHONHASHSEED"] = str(seed)
    if "torch" in sys.modules or importlib.util.find_spec("torch") is not None:
        import torch

        torch.manual_seed(seed)
        if torch.cuda.is_available():
            torch.cuda.manual_seed_all(seed)


def hide_labels(labels, fraction: float, seed: int) -> np.ndarray:
    """Boolean mask of cells whose label is hidden: ``fraction`` of each cell type, seeded.

    Stratified by cell type so every type keeps labelled cells (round down per type, and a
    type with a single cell keeps it). Unlabelled cells (``UNLABELLED``) have no label to hide.
    """
    labels = np.asarray(labels).astype(str)
    hidden = np.zeros(labels.shape[0], dtype=bool)
    if fraction <= 0:
        return hidden
    if fraction >= 1:
        raise ValueError(f"label_missing must be in [0, 1), got {fraction}")
    rng = np.random.default_rng(seed)
    for lab in np.unique(labels[labels != UNLABELLED]):
        idx = np.flatnonzero(labels == lab)
        n_hide = int(np.floor(fraction * idx.size))
        if n_hide:
            hidden[rng.choice(idx, n_hide, replace=False)] = True
    return hidden


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    return obj


def _uns_safe(info: dict[str, Any]) -> dict[str, Any]:
    """anndata cannot write None; drop those keys, make loss histories float arrays."""
    out: dict[str, Any] = {}
    for k, v in info.items():
        if v is None:
            continue
        if isinstance(v, dict):
            out[k] = _uns_safe(v)
        elif isinstance(v, (list, tuple)) and v and all(isinstance(x, (int, float, np.number)) for x in v):
            out[k] = np.asarray(v, dtype=float)
        elif isinstance(v, (list, tuple)):
            out[k] = json.dumps(_jsonable(v))
        else:
            out[k] = v
    return out


def write_run_file(path: Path, data, result: IntegrationResult | None, info: dict[str, Any],
                   hidden: np.ndarray | None) -> None:
    """Write ``run.h5ad`` atomically (temp name in the same folder, then rename)."""
    import anndata as ad
    import pandas as pd

    obs = pd.DataFrame(index=data.obs_names.copy())
    for key in ("batch", "label", "system"):
        if key in data.obs:
            obs[key] = data.obs[key].values
    if hidden is not None:
        obs["label_hidden"] = hidden
    X = None
    var = None
    if result is not None and result.corrected is not None:
        X = result.corrected
        var = pd.DataFrame(index=data.var_names.copy())
    run = ad.AnnData(X=X, obs=obs, var=var)
    if result is not None:
        if result.embedding is not None:
            run.obsm["X_emb"] = np.asarray(result.embedding, dtype=np.float32)
        if result.connectivities is not None:
            run.obsp["connectivities"] = result.connectivities
            if result.distances is not None:
                run.obsp["distances"] = result.distances
        if result.predicted_labels is not None:
            run.obs["predicted_label"] = pd.Categorical(np.asarray(result.predicted_labels).astype(str))
    run.uns["run"] = _uns_safe(info)
    run.uns["run_json"] = json.dumps(_jsonable(info))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        run.write_h5ad(tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def read_run_info(path: str | Path) -> dict[str, Any]:
    """The run record (``uns["run_json"]``) without loading matrices."""
    import h5py

    with h5py.File(path, "r") as f:
        raw = f["uns"]["run_json"][()]
    return json.loads(raw.decode() if isinstance(raw, bytes) else raw)


def latent_sd(embedding) -> list[float]:
    """Standard deviation over cells of each embedding dimension (posterior means for the VAEs):
    the aggregate step flags a latent space whose largest dimension dwarfs the others."""
    return [round(float(v), 4) for v in np.asarray(embedding, dtype=np.float64).std(axis=0)]


def _peak_gpu_mb(device: str) -> float | None:
    if not device.startswith("cuda") or "torch" not in sys.modules:
        return None
    import torch

    return float(torch.cuda.max_memory_allocated()) / 2**20


def _child(job: dict[str, Any], err_path: str) -> None:
    """Runs in the forked process: load, integrate, write the run file (status ok)."""
    try:
        if job["max_mem_mb"]:
            limit = int(job["max_mem_mb"]) * 2**20
            resource.setrlimit(resource.RLIMIT_DATA, (limit, limit))
        _integrate_and_write(job)
    except BaseException as exc:  # noqa: BLE001 - everything a method can raise is recorded
        kind = OOM_ERROR_PREFIX if isinstance(exc, MemoryError) else type(exc).__name__
        msg = f"{kind}: {exc}" if str(exc) else kind
        if isinstance(exc, SystemExit):
            msg = f"the method called sys.exit({exc.code!r}) instead of returning a result or raising an error"
        Path(err_path).write_text(json.dumps({"error": msg, "traceback": traceback.format_exc()}))
        os._exit(1)
    os._exit(0)


def _integrate_and_write(job: dict[str, Any]) -> None:
    import anndata as ad

    t_load = time.perf_counter()
    data = ad.read_h5ad(job["data"])
    given = untouched_copy(data)  # what the method is given, whatever it does to ``data``
    spec = registry.get(job["method"])
    hidden = None
    if spec.supervised and job["label_missing"] > 0:
        hidden = hide_labels(data.obs["label"].values, job["label_missing"], job["seed"])
    if spec.supervised and "label" in data.obs:  # hidden and unlabelled cells: NaN, as the contract says
        lab = data.obs["label"].astype(str).to_numpy(dtype=object)
        unknown = (lab == UNLABELLED) if hidden is None else (lab == UNLABELLED) | hidden
        if unknown.any():
            lab[unknown] = np.nan
            data.obs["label"] = lab
    load_s = time.perf_counter() - t_load
    threads = job["threads"]
    if "torch" in sys.modules or spec.gpu:
        import torch

        torch.set_num_threads(threads)
    seed_everything(job["seed"])
    device = job["info"]["device"]
    module = registry.load_module(job["method"])
    t0 = time.perf_counter()
    result: IntegrationResult = module.integrate(
        data, batch_key="batch", label_key="label", params=job["params"], seed=job["seed"], device=device
    )
    if not isinstance(result, IntegrationResult):
        raise ResultError(f"integrate returned {type(result).__name__}, not an IntegrationResult (methods/base.py)")
    check_cells_unchanged(data, given)
    result.check(given.n_obs, given.n_vars)
    wall = time.perf_counter() - t0
    info = dict(job["info"])
    info.update(
        status="ok",
        error="",
        integrate_s=round(wall, 3),
        load_s=round(load_s, 3),
        epochs=result.epochs,
        loss_history=result.loss_history,
        peak_rss_mb=peak_rss_mb(include_children=True),
        peak_gpu_mb=_peak_gpu_mb(device),
        extra=result.extra,
    )
    if result.embedding is not None and (result.epochs or result.loss_history):
        info["latent_sd"] = latent_sd(result.embedding)
    info["wall_s"] = round(time.perf_counter() - job["t_start"], 3)
    write_run_file(Path(job["out"]), given, result, info, hidden)


def untouched_copy(data):
    """The cell and gene names and the standard obs columns of ``data``, copied: the run file is
    written from these, not from the object the method received (which it may have changed)."""
    import anndata as ad
    import pandas as pd

    obs = data.obs[[k for k in ("batch", "label", "system") if k in data.obs]].copy()
    return ad.AnnData(obs=obs, var=pd.DataFrame(index=data.var_names.copy()))


def check_cells_unchanged(data, given) -> None:
    """``ResultError`` when the method subset or reordered the cells of its input in place: its
    result rows would no longer be the input's cells (sc.pp.filter_cells does this by default)."""
    if data.n_obs != given.n_obs:
        raise ResultError(f"the method changed its input in place: adata has {data.n_obs} of the {given.n_obs} "
                          "cells it was given (e.g. sc.pp.filter_cells); work on adata.copy() and return a "
                          "result for every input cell")
    if not data.obs_names.equals(given.obs_names):
        raise ResultError("the method renamed or reordered the cells of its input in place; work on adata.copy() and "
                          "return a result for every input cell, in the input's order")


class DataFileError(ValueError):
    """The dataset file itself cannot be read (a data problem, not a method failure)."""


class OutputFolderError(OSError):
    """The run file's folder cannot be written: nothing can be recorded there."""


def check_output_folder(folder: Path) -> None:
    """Create ``folder`` and make sure a file can be written in it; ``OutputFolderError`` naming it
    otherwise (without this, the run and its failure record both fail with tracebacks)."""
    import tempfile

    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".write-check-"):
            pass
    except OSError as exc:
        raise OutputFolderError(f"cannot write the run file in {folder} ({exc.strerror or exc}); make the output "
                                "folder writable (chmod -R u+w, or mount it read-write) and run again") from None


def check_data_file(path: str) -> int:
    """Number of cells of a readable h5ad; ``DataFileError`` naming the file otherwise."""
    import h5py

    try:
        with h5py.File(path, "r") as f:
            obs = f["obs"]
            index = obs.attrs.get("_index", "_index")
            return int(obs[index].shape[0])
    except (OSError, KeyError) as exc:
        raise DataFileError(f"cannot read dataset '{path}' as h5ad: {exc}") from None


def dataset_failure(path: str) -> str | None:
    """The error of a failed-dataset record (docs/contracts.md: bad data recorded by the data
    stage), else None."""
    import h5py

    with h5py.File(path, "r") as f:
        raw = f["uns"]["dataset_json"][()] if "uns" in f and "dataset_json" in f["uns"] else None
    record = json.loads(raw.decode() if isinstance(raw, bytes) else raw) if raw is not None else {}
    if record.get("status") != "failed":
        return None
    return f"{DATASET_FAILED} ({record.get('stage', '?')}): {record.get('error', '')}"


def run(data: str, out: str, method: str, setting: str, params: dict[str, Any] | None, seed: int,
        device: str = "auto", threads: int = 1, label_missing: float = 0.0, strict: bool = False,
        max_mem_mb: int | None = None, attempt: int = 1, attempts: int = 1,
        time_limit_s: float | None = None, run_time_limit_s: float | None = None) -> dict[str, Any]:
    """Run and record one integration. Returns the run record (``status`` ok or failed).

    ``attempt`` of ``attempts``: Snakemake's attempt number and total. Out of memory or time
    before the last attempt raises ``RetryRun`` and writes nothing. ``time_limit_s`` stops the
    method after that long (default: shortly before a SLURM job's time limit, else none) and is
    retried like running out of memory. ``run_time_limit_s`` (config ``run_time_limit_min``) is
    the study's limit per run: a run stopped by it is recorded as failed at once (another attempt
    would get the same limit).
    """
    t_start = time.perf_counter()
    out_path = Path(out)
    check_data_file(data)  # a broken dataset is an input error: no run file is written
    check_output_folder(out_path.parent)
    info: dict[str, Any] = {
        "method": method, "setting": setting, "base_setting": base_setting(setting, label_missing),
        "seed": int(seed), "params": {}, "label_missing": float(label_missing), "threads": int(threads), "data": str(data),
        "started_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "host": socket.gethostname(), "versions": package_versions(), "git_commit": git_commit(),
        "status": "failed", "error": "", "attempt": int(attempt), "attempts": int(attempts),
        "run_time_limit_s": run_time_limit_s,
    }
    try:
        spec = registry.get(method)
        info["params"] = registry.merge_params(method, params)
        info["output"] = spec.output
        info["device"] = resolve_device(device, spec.gpu)
        info["code"] = registry.code_identity(method)
    except (KeyError, ValueError) as exc:
        info["error"] = f"{type(exc).__name__}: {exc.args[0] if exc.args else exc}"
        return _record_failure(out_path, data, info, t_start, strict)
    info["error"] = dataset_failure(data) or ""
    if info["error"]:
        return _record_failure(out_path, data, info, t_start, strict)

    job = {
        "data": data, "out": str(out_path), "method": method, "params": info["params"],
        "seed": int(seed), "threads": int(threads), "label_missing": float(label_missing),
        "max_mem_mb": max_mem_mb, "info": info, "t_start": t_start,
    }
    err_path = out_path.with_name(f".{out_path.name}.err{os.getpid()}")
    out_path.parent.mkdir(parents=True, exist_ok=True)
    ctx = multiprocessing.get_context("fork")
    proc = ctx.Process(target=_child, args=(job, str(err_path)))
    limit_s = method_time_limit_s(time_limit_s)
    study_limit_s = run_time_limit_s
    by_study_limit = study_limit_s is not None and (limit_s is None or study_limit_s <= limit_s)
    if by_study_limit:
        limit_s = study_limit_s
    old_file = _file_id(out_path)  # a run file from before is not this run's result
    proc.start()
    proc.join(limit_s)
    timed_out = proc.exitcode is None
    if timed_out:
        proc.kill()
        proc.join()
    if proc.exitcode != 0:  # a killed child cannot remove its half-written file itself
        out_path.with_name(f".{out_path.name}.tmp{proc.pid}").unlink(missing_ok=True)
    if proc.exitcode == 0 and _file_id(out_path) not in (None, old_file):
        return read_run_info(out_path)
    if err_path.exists():
        err = json.loads(err_path.read_text())
        err_path.unlink()
        info["error"] = err["error"]
        info["traceback"] = err["traceback"]
    elif timed_out and by_study_limit:
        info["error"] = (f"{RUN_LIMIT_ERROR_PREFIX}: the method was stopped after {run_time_limit_s / 60:g} min "
                         "(config run_time_limit_min); raise run_time_limit_min to give it longer")
    elif timed_out:
        info["error"] = f"{TIME_ERROR_PREFIX}: the method was stopped after {limit_s:.0f} s"
    elif proc.exitcode is not None and proc.exitcode < 0:
        info["error"] = killed_by_signal(proc.exitcode)
    else:
        info["error"] = (f"the method's process ended with exit code {proc.exitcode} without a result or an error "
                         "(os._exit() in the method, or a crash in compiled code; its log may say more)")
    if is_resource_failure(info["error"]):
        if attempt < attempts:
            raise RetryRun(f"{info['error']} (attempt {attempt} of {attempts})")
        if attempts > 1:
            info["error"] += f" (on the last of {attempts} attempts)"
    return _record_failure(out_path, data, info, t_start, strict)


def _file_id(path: Path) -> tuple[int, int] | None:
    """(device, inode) of a file, None when there is none: the run file is written under a temporary
    name and renamed, so a new run file always has a new inode."""
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    return st.st_dev, st.st_ino


def _record_failure(out_path: Path, data_path: str, info: dict[str, Any], t_start: float,
                    strict: bool) -> dict[str, Any]:
    import anndata as ad

    info["status"] = "failed"
    info["wall_s"] = round(time.perf_counter() - t_start, 3)
    data = ad.read_h5ad(data_path, backed="r")
    write_run_file(out_path, data, None, info, None)
    print(f"run failed: {info['method']} {info['setting']} seed{info['seed']}: {info['error']}",
          file=sys.stderr)
    if strict:
        raise SystemExit(f"strict mode: run {out_path} failed: {info['error']}")
    return info
