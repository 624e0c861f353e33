"""Shared pytest fixtures.

``sim_small``: a small preprocessed simulated dataset (~600 cells x 500 HVGs, 2 batches with a
clear batch effect, 7 cell types), built once per session in about a second. Tests must not
modify it in place: take ``sim_small.copy()`` first. ``sim_small_path``: the same data in an
h5ad file in a session temp folder (read-only by convention as well).
"""

from __future__ import annotations

import os

# Set before numpy / torch / jax import anywhere in the test session: the test machine is shared.
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
# numba's OpenMP layer does not survive the runner's fork once the parent has used it (a
# pytest session does; the pipeline's fresh CLI processes do not): use the fork-safe layer.
os.environ.setdefault("NUMBA_THREADING_LAYER", "workqueue")
# One value for the whole session, set before numba is first imported: numba refuses a
# different NUMBA_NUM_THREADS once its threads are launched.
os.environ.setdefault("NUMBA_NUM_THREADS", "1")

import pytest  # noqa: E402

SIM_SMALL = {"scenario": "baseline", "seed": 0, "n_cells": 1000, "n_genes": 2000}
SIM_SMALL_HVG = 500


@pytest.fixture(scope="session")
def sim_small():
    """Preprocessed simulated AnnData: ~590 cells x 500 HVGs, Batch1/Batch2, Group1..7.

    Contract file layout (design.md section 3): X log-normalized float32 CSR, layers["counts"],
    obs batch/label/system, obsm["X_pca"] (50 PCs), uns["dataset"].
    """
    from datasets.preprocess import preprocess
    from datasets.simulate import simulate

    raw = simulate(**SIM_SMALL)
    return preprocess(raw, name="sim_small", batch_key="batch", label_key="celltype",
                      n_hvg=SIM_SMALL_HVG, seed=0, source="datasets.simulate baseline seed 0")


@pytest.fixture(scope="session")
def sim_small_path(sim_small, tmp_path_factory):
    """Path of an h5ad file holding ``sim_small`` (preprocessed contract file)."""
    from datasets import write_h5ad_atomic

    return write_h5ad_atomic(sim_small, tmp_path_factory.mktemp("sim_small") / "sim_small.h5ad")
