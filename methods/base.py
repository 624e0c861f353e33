"""The method interface: what every integration method receives and returns.

A method is a module in ``methods/`` exposing

    integrate(adata, *, batch_key, label_key, params, seed, device) -> IntegrationResult

plus one line in ``methods/registry.py`` (metadata and default parameters). ``adata`` is the
preprocessed dataset (docs/contracts.md): ``X`` log-normalized HVGs (float32),
``layers["counts"]`` raw counts, ``obs["batch"]``, ``obs["label"]`` (for supervised methods
with hidden labels, hidden cells are NaN in ``obs[label_key]``), ``obs["system"]``,
``obsm["X_pca"]``. ``params`` is already merged with the registry defaults and checked for
unknown keys; a method checks the *values* it gets and raises ``ParamError`` for bad ones.
Methods never write files: the runner (``methods/runner.py``) owns the run file.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import Any

import numpy as np


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

    def check(self, n_obs: int) -> None:
        """Raise if the result breaks the contract (shape, finiteness, nothing returned)."""
        if self.embedding is None and self.connectivities is None and self.corrected is None:
            raise ValueError("method returned neither an embedding, a graph nor corrected data")
        if self.embedding is not None:
            emb = np.asarray(self.embedding)
            if emb.ndim != 2 or emb.shape[0] != n_obs:
                raise ValueError(f"embedding has shape {emb.shape}, expected ({n_obs}, d)")
            if not np.isfinite(emb).all():
                raise TrainingDivergedError("embedding contains NaN or inf values")
        if self.connectivities is not None and self.connectivities.shape != (n_obs, n_obs):
            raise ValueError(f"graph has shape {self.connectivities.shape}, expected ({n_obs}, {n_obs})")
        if self.corrected is not None and self.corrected.shape[0] != n_obs:
            raise ValueError(f"corrected matrix has {self.corrected.shape[0]} rows, expected {n_obs}")
