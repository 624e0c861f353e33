"""The method interface: what every integration method receives and returns.

A method is a module in ``methods/`` exposing

    integrate(adata, *, batch_key, label_key, params, seed, device) -> IntegrationResult

plus one line in ``methods/registry.py`` (metadata and default parameters). ``adata`` is the
preprocessed dataset (docs/contracts.md): ``X`` log-normalized HVGs (float32),
``layers["counts"]`` raw counts, ``obs["batch"]``, ``obs["label"]`` (for supervised methods
with hidden labels, hidden cells are NaN in ``obs[label_key]``, and so are unlabelled cells), ``obs["system"]``,
``obsm["X_pca"]``. ``params`` is already merged with the registry defaults and checked for
unknown keys; a method checks the *values* it gets and raises ``ParamError`` for bad ones.
Methods never write files: the runner (``methods/runner.py``) owns the run file.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy.sparse import issparse


def peak_rss_mb(include_children: bool = False) -> float:
    """Peak resident memory of this process in MiB (``VmHWM`` of /proc/self/status on Linux).

    Not ``ru_maxrss`` alone: Linux carries ru_maxrss over fork and exec, so a process started by
    a large parent reports the parent's peak. ``include_children`` takes the max with the peak of
    waited-for subprocesses (e.g. Rscript), whose ru_maxrss is their own peak or, if larger, this
    process's RSS when it started them (never more than this process's own peak).
    """
    import resource

    own_kb = None
    try:
        with open("/proc/self/status") as fh:
            own_kb = next((int(line.split()[1]) for line in fh if line.startswith("VmHWM:")), None)
    except OSError:
        pass
    if own_kb is None:  # no procfs (macOS: ru_maxrss is in bytes there)
        own_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / (1024 if sys.platform == "darwin" else 1)
    if include_children:
        own_kb = max(own_kb, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
    return own_kb / 1024


def killed_by_signal(returncode: int) -> str:
    """Describe a negative exit code (process killed by a signal); SIGKILL is usually the kernel's
    OOM killer, so it says so."""
    import signal

    try:
        name = signal.Signals(-returncode).name
    except ValueError:
        name = "unknown signal"
    hint = "most often out of memory" if name == "SIGKILL" else ""
    return f"killed by signal {-returncode} ({name}{': ' + hint if hint else ''})"


# How a run of a failed dataset (a record of bad data, datasets/failure.py) starts its error.
DATASET_FAILED = "dataset failed before integration"


class ParamError(ValueError):
    """A hyperparameter value a method cannot accept (message names the parameter)."""


class TrainingDivergedError(RuntimeError):
    """Training produced a non-finite loss or output (message names epoch and loss term)."""


@dataclass
class IntegrationResult:
    """What a method returns. At least one of embedding / graph / corrected is set.

    embedding: cells x d float array (-> ``obsm["X_emb"]``).
    connectivities, distances: cells x cells sparse graphs (-> ``obsp``; graph methods).
    corrected: cells x genes corrected expression (-> ``X`` of the run file).
    predicted_labels: per-cell predicted cell type (supervised methods), strings.
    loss_history: {term: [value per epoch]}; epochs: epochs trained.
    extra: anything JSON-serializable worth recording (e.g. peak GPU memory, notes).
    """

    embedding: np.ndarray | None = None
    connectivities: Any = None
    distances: Any = None
    corrected: Any = None
    predicted_labels: np.ndarray | None = None
    loss_history: dict[str, list[float]] = field(default_factory=dict)
    epochs: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def check(self, n_obs: int, n_vars: int | None = None) -> None:
        """Raise ``ResultError`` if the result breaks the contract: nothing returned, a shape that does
        not fit the ``n_obs`` cells (and ``n_vars`` genes) the method was given, no columns, every cell
        alike (constant), or non-finite values (``TrainingDivergedError``)."""
        if self.embedding is None and self.connectivities is None and self.corrected is None:
            raise ResultError("method returned neither an embedding, a graph nor corrected data")
        if self.embedding is not None:
            if type(self.embedding).__module__.startswith("torch"):  # np.asarray fails on a GPU tensor
                raise ResultError(f"embedding is a torch tensor (device {self.embedding.device}); return a "
                                  "numpy array on the CPU (.detach().cpu().numpy())")
            if issparse(self.embedding):
                raise ResultError("embedding is a sparse matrix; return a dense array (e.g. .toarray())")
            emb = np.asarray(self.embedding)
            if emb.ndim != 2 or emb.shape[0] != n_obs:
                raise ResultError(f"embedding has shape {emb.shape}, expected ({n_obs}, d): one row per input cell")
            _check_matrix("embedding", emb)
        if self.corrected is not None:
            shape = self.corrected.shape
            if len(shape) != 2 or shape[0] != n_obs or (n_vars is not None and shape[1] != n_vars):
                raise ResultError(f"corrected matrix has shape {shape}, expected ({n_obs}, "
                                  f"{n_vars if n_vars is not None else 'genes'}): the input's cells x genes")
            _check_matrix("corrected matrix", self.corrected)
        for name in ("connectivities", "distances"):
            graph = getattr(self, name)
            if graph is None:
                continue
            if graph.shape != (n_obs, n_obs):
                raise ResultError(f"graph {name} has shape {graph.shape}, expected ({n_obs}, {n_obs})")
            values = graph.data if issparse(graph) else np.asarray(graph)
            if not np.isfinite(values).all():
                raise TrainingDivergedError(f"graph {name} contains NaN or inf values")
            if name == "connectivities" and not np.any(values):
                raise ResultError("graph connectivities has no edge (all zero)")
        if self.predicted_labels is not None and len(self.predicted_labels) != n_obs:
            raise ResultError(f"predicted_labels has {len(self.predicted_labels)} entries, expected {n_obs}")


class ResultError(ValueError):
    """A method's result that breaks the contract of ``IntegrationResult`` (the message says how)."""


def _check_matrix(what: str, matrix) -> None:
    """A cells x d output has columns, finite values, and cells that differ (scores of a constant
    output are meaningless: every cell is every other cell's neighbour, batch ASW is 1)."""
    if matrix.shape[1] == 0:
        raise ResultError(f"{what} has no columns (shape {matrix.shape})")
    if not np.issubdtype(matrix.dtype, np.number) or np.issubdtype(matrix.dtype, np.complexfloating):
        raise ResultError(f"{what} has dtype {matrix.dtype}; real numbers are needed")
    values = matrix.data if issparse(matrix) else np.asarray(matrix)
    if not np.isfinite(values).all():
        raise TrainingDivergedError(f"{what} contains NaN or inf values")
    if issparse(matrix):
        spread = (matrix.max(axis=0) - matrix.min(axis=0)).toarray()
    else:
        spread = np.ptp(values, axis=0)
    if matrix.shape[0] > 1 and not np.any(spread):
        raise ResultError(f"{what} is constant: every cell has the same values, so nothing can be scored")
