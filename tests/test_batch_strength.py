"""Batch-effect strength before integration (metrics/batch_strength.py) on constructed data:
no batch effect gives ~0, a strong one a large value; sysVI's system ratio; the CLI."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from metrics.batch_strength import batch_strength


def two_batches(shift: float, n_per_group: int = 200, n_types: int = 3, dims: int = 15, seed: int = 0):
    rng = np.random.default_rng(seed)
    X, batch, label = [], [], []
    for t in range(n_types):
        centre = rng.normal(scale=5, size=dims)
        for b in ("B1", "B2"):
            pts = centre + rng.normal(size=(n_per_group, dims))
            if b == "B2":
                pts[:, 0] += shift
            X.append(pts)
            batch += [b] * n_per_group
            label += [f"T{t}"] * n_per_group
    return np.vstack(X), np.array(batch), np.array(label)


def test_no_batch_effect_is_near_zero_even_for_small_groups():
    # without the sampling-noise correction, 60-cell groups in 15 dims would read ~0.18
    for n in (60, 400):
        X, b, lab = two_batches(0.0, n_per_group=n)
        assert batch_strength(X, b, lab)["separation"] < 0.08


def test_strong_batch_effect_is_large_and_grows_with_the_shift():
    seps = []
    for shift in (1.0, 4.0, 12.0):
        X, b, lab = two_batches(shift)
        seps.append(batch_strength(X, b, lab)["separation"])
    assert seps[0] < seps[1] < seps[2]
    # the shift over the within-batch spread (sqrt(15) for unit variance in 15 dims)
    assert seps[2] == pytest.approx(12 / np.sqrt(15), rel=0.1)
    assert seps[2] > 2


def test_cell_types_of_one_batch_are_listed_and_left_out():
    X, b, lab = two_batches(4.0)
    keep = ~((lab == "T2") & (b == "B2"))
    row = batch_strength(X[keep], b[keep], lab[keep], dataset="d")
    assert row["batch_unique_types"] == "T2"
    assert row["n_shared_types"] == 2 and "T2" not in row["per_type"]


def test_too_few_cells_gives_na_with_a_reason():
    X, b, lab = two_batches(4.0, n_per_group=20)
    row = batch_strength(X, b, lab)
    assert np.isnan(row["separation"]) and "50 cells" in row["note"]


def test_system_ratio_compares_between_and_within_system_batches():
    rng = np.random.default_rng(1)
    dims, n = 15, 150

    def data(system_shift):
        X, batch, system = [], [], []
        for s in ("mouse", "human"):
            for k in range(3):
                offset = rng.normal(size=dims)  # sample effect, also within a system
                pts = rng.normal(size=(n, dims)) + offset + (system_shift if s == "human" else 0)
                X.append(pts)
                batch += [f"{s}{k}"] * n
                system += [s] * n
        return np.vstack(X), np.array(batch), np.array(["T"] * len(batch)), np.array(system)

    X, b, lab, sys_ = data(0.0)
    assert batch_strength(X, b, lab, sys_)["system_ratio"] == pytest.approx(1.0, abs=0.5)
    X, b, lab, sys_ = data(6.0)
    assert batch_strength(X, b, lab, sys_)["system_ratio"] > 2.5
    assert np.isnan(batch_strength(X, b, lab, b)["system_ratio"])  # one batch per system: not defined


def test_cli_on_a_preprocessed_file_and_combine(sim_small_path, tmp_path):
    from metrics.batch_strength import COLUMNS, main

    out = tmp_path / "one.tsv"
    # ~40 cells per cell type and batch in sim_small: below sysVI's 50-cell groups
    assert main(["--data", str(sim_small_path), "--dataset", "sim_small", "--out", str(out), "--min-cells", "20"]) == 0
    row = pd.read_csv(out, sep="\t").iloc[0]
    assert row["dataset"] == "sim_small" and row["separation"] > 0.3  # the simulation has a clear batch effect
    assert row["n_shared_types"] >= 1
    both = tmp_path / "batch_strength.tsv"
    assert main(["combine", "--inputs", str(out), str(out), "--out", str(both)]) == 0
    assert list(pd.read_csv(both, sep="\t").columns) == COLUMNS
    assert main(["--data", str(tmp_path / "absent.h5ad"), "--dataset", "x", "--out", str(out)]) == 2


def test_failed_and_unlabelled_datasets_get_a_row_that_says_so(sim_small_path, tmp_path):
    """A failed dataset's record (datasets/failure.py) stopped the whole study at this step; an
    unlabelled dataset is measured over all cells, and the note says what that includes."""
    import anndata as ad

    from datasets.failure import write_failed_dataset
    from metrics.batch_strength import main

    failed = write_failed_dataset(tmp_path / "bad.h5ad", "bad", "preprocess", "obs['sample'] has 1 batch(es) (S1)")
    assert main(["--data", str(failed), "--dataset", "bad", "--out", str(tmp_path / "bad.tsv")]) == 0
    row = pd.read_csv(tmp_path / "bad.tsv", sep="\t").iloc[0]
    assert np.isnan(row["separation"]) and row["note"] == "dataset failed (preprocess): obs['sample'] has 1 batch(es) (S1)"
    adata = ad.read_h5ad(sim_small_path)
    adata.obs["label"] = "unknown"
    adata.uns["dataset"] = {**dict(adata.uns.get("dataset", {})), "labelled": False}
    adata.write_h5ad(tmp_path / "nolabels.h5ad")
    assert main(["--data", str(tmp_path / "nolabels.h5ad"), "--dataset", "n", "--out", str(tmp_path / "n.tsv")]) == 0
    row = pd.read_csv(tmp_path / "n.tsv", sep="\t").iloc[0]
    assert row["separation"] > 0.3 and row["n_labels"] == 0 and row["note"].startswith("unlabelled: all cells")
