"""Raw-data validation: every bad input gives a DataError naming the dataset and the problem,
and a failed CLI call writes nothing."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from datasets import write_h5ad_atomic
from datasets.__main__ import main
from datasets.ingest import DataError, check_batches_after_qc, validate_raw
from datasets.simulate import published_params, splat_simulate

REPO_ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def raw_small():
    """Unfiltered simulated counts: 120 cells x 300 genes, Batch1/Batch2, obs celltype."""
    return splat_simulate(published_params(n_cells=120, n_genes=300), seed=11)


def validate(adata, **overrides):
    kwargs = {"dataset": "toy", "batch_key": "batch", "label_key": "celltype"} | overrides
    return validate_raw(adata, **kwargs)


def with_matrix(adata, matrix):
    out = adata.copy()
    out.X = matrix
    return out


def test_valid_raw_gives_standard_obs_and_provenance(raw_small):
    clean, prov = validate(raw_small)
    assert list(clean.obs["batch"].cat.categories) == ["Batch1", "Batch2"]
    assert (clean.obs["label"].astype(str) == raw_small.obs["celltype"].astype(str)).all()
    assert (clean.obs["system"].astype(str) == clean.obs["batch"].astype(str)).all()
    assert "celltype" in clean.obs  # original kept
    assert prov["name"] == "toy" and prov["counts_integer"] and prov["labelled"] and prov["warnings"] == []
    assert sp.isspmatrix_csr(clean.X) and clean.X.nnz == raw_small.X.nnz


@pytest.mark.parametrize(("overrides", "pattern"), [
    ({"batch_key": "tech"}, r"dataset 'toy': obs has no column 'tech' \(batch_key\); obs columns: batch, celltype"),
    ({"label_key": "cell_type"}, r"no column 'cell_type' \(label_key\)"),
    ({"system_key": "species"}, r"no column 'species' \(system_key\)"),
    ({"counts": "layers/counts"}, r"no layer 'counts'; layers: \(none\)"),
    ({"counts": "raw"}, r"counts must be 'X' or 'layers/<name>'"),
])
def test_missing_keys_name_what_exists(raw_small, overrides, pattern):
    with pytest.raises(DataError, match=pattern):
        validate(raw_small, **overrides)


def test_single_batch(raw_small):
    one = raw_small.copy()
    one.obs["batch"] = "Batch1"
    with pytest.raises(DataError, match=r"dataset 'toy': obs\['batch'\] has 1 batch\(es\) \(Batch1\)"):
        validate(one)


def test_missing_batch_values(raw_small):
    bad = raw_small.copy()
    bad.obs["batch"] = bad.obs["batch"].astype(object)
    bad.obs.iloc[:4, bad.obs.columns.get_loc("batch")] = np.nan
    with pytest.raises(DataError, match=r"obs\['batch'\] \(batch_key\) has 4 missing values"):
        validate(bad)


@pytest.mark.parametrize(("value", "pattern"), [
    (np.nan, "1 NaN and 0 infinite"), (np.inf, "0 NaN and 1 infinite"), (-2.0, "1 negative values"),
])
def test_bad_values(raw_small, value, pattern):
    dense = raw_small.X.toarray().astype(np.float32)
    dense[3, 5] = value
    with pytest.raises(DataError, match=pattern):
        validate(with_matrix(raw_small, sp.csr_matrix(dense)))


def test_non_integer_counts_need_declaration(raw_small):
    fractional = with_matrix(raw_small, raw_small.X.astype(np.float32) * 1.5)
    with pytest.raises(DataError, match="non-integer values .* set counts_integer: false"):
        validate(fractional)
    with pytest.raises(DataError, match="declared integer"):
        validate(fractional, counts_integer=True)
    _, prov = validate(fractional, counts_integer=False)
    assert prov["counts_integer"] is False and prov["counts_integer_declared"] is False


def test_counts_from_layer_and_dense_input(raw_small):
    layered = raw_small.copy()
    layered.layers["counts"] = raw_small.X.toarray()
    layered.X = np.log1p(raw_small.X.toarray().astype(np.float32))  # non-integer X is fine here
    clean, prov = validate(layered, counts="layers/counts")
    assert (clean.X != raw_small.X).nnz == 0 and prov["counts"] == "layers/counts"


@pytest.mark.filterwarnings("ignore:Observation names are not unique")
def test_duplicated_cell_names(raw_small):
    dup = raw_small.copy()
    dup.obs_names = ["same"] * 2 + list(dup.obs_names[2:])
    with pytest.raises(DataError, match=r"2 cells share 1 duplicated names \(e.g. same\); .* set datasets\.toy\.preprocess"
                       r"\.duplicate_cells: make_unique in the config"):
        validate(dup)
    with pytest.warns(UserWarning, match="cell names made unique"):
        clean, prov = validate(dup, duplicate_cells="make_unique")
    assert clean.obs_names.is_unique and "cell names made unique" in prov["warnings"][0]


@pytest.mark.filterwarnings("ignore:Variable names are not unique")
def test_duplicated_gene_names_made_unique_with_warning(raw_small):
    dup = raw_small.copy()
    dup.var_names = ["GeneX"] * 3 + list(dup.var_names[3:])
    with pytest.warns(UserWarning, match="gene names made unique"):
        clean, prov = validate(dup)
    assert clean.var_names.is_unique and "3 genes share 1 duplicated names (e.g. GeneX)" in prov["warnings"][0]


def test_empty_matrices(raw_small):
    with pytest.raises(DataError, match=r"the matrix is empty \(0 cells"):
        validate(raw_small[:0].copy())
    with pytest.raises(DataError, match="no nonzero value"):
        validate(with_matrix(raw_small, sp.csr_matrix(raw_small.shape, dtype=np.float32)))


def test_unlabelled_dataset(raw_small):
    clean, prov = validate(raw_small, label_key=None)
    assert (clean.obs["label"] == "unknown").all() and prov["labelled"] is False


def test_missing_labels_become_unknown(raw_small):
    partial = raw_small.copy()
    partial.obs["celltype"] = partial.obs["celltype"].astype(object)
    partial.obs.iloc[:5, partial.obs.columns.get_loc("celltype")] = np.nan
    with pytest.warns(UserWarning, match="5 cells without a label"):
        clean, _ = validate(partial)
    assert (clean.obs["label"] == "unknown").sum() == 5


def test_conflicting_standard_column_is_kept(raw_small):
    renamed = raw_small.copy()
    renamed.obs["tech"] = renamed.obs["batch"]
    renamed.obs["batch"] = "something else"
    with pytest.warns(UserWarning, match="batch_original"):
        clean, _ = validate(renamed, batch_key="tech")
    assert (clean.obs["batch_original"] == "something else").all()
    assert set(clean.obs["batch"]) == {"Batch1", "Batch2"}


def test_small_batch_after_qc(raw_small):
    clean, _ = validate(raw_small)
    clean = clean[:62].copy()  # Batch1 = first 60 cells, so Batch2 keeps 2
    clean.obs["batch"] = clean.obs["batch"].cat.remove_unused_categories()
    with pytest.raises(DataError, match=r"fewer than 3 cells after QC: Batch2 \(2\)"):
        check_batches_after_qc(clean, "toy")


def test_preprocess_cli_failure_writes_nothing(raw_small, tmp_path, capsys):
    raw_path = write_h5ad_atomic(raw_small, tmp_path / "raw.h5ad")
    out = tmp_path / "data.h5ad"
    code = main(["preprocess", "--raw", str(raw_path), "--out", str(out), "--name", "toy",
                 "--batch-key", "tech", "--label-key", "celltype"])
    err = capsys.readouterr().err
    assert code == 2 and not out.exists()
    assert err.startswith("error: dataset 'toy': obs has no column 'tech'") and err.count("\n") == 1
    assert list(tmp_path.iterdir()) == [raw_path]  # no temporary left behind


def test_cli_subprocess_one_line_no_traceback(tmp_path):
    out = tmp_path / "sub.h5ad"
    proc = subprocess.run([sys.executable, "-m", "datasets", "subsample", "--data", str(tmp_path / "missing.h5ad"),
                           "--n", "10", "--out", str(out)], cwd=REPO_ROOT, capture_output=True, text=True)
    assert proc.returncode == 2 and not out.exists()
    assert "Traceback" not in proc.stderr and proc.stderr.strip().startswith("error: input file")


def test_provenance_fields_are_plain(raw_small):
    _, prov = validate(raw_small, label_key=None)
    assert pd.api.types.is_bool(prov["labelled"]) and prov["n_cells_raw"] == raw_small.n_obs


def test_download_subcommand_looks_up_registry(tmp_path, monkeypatch, capsys):
    """The CLI validates the registry and passes the entry to fetch (stubbed here: no network)."""
    import datasets.download

    registry = Path(__file__).resolve().parents[1] / "config" / "datasets.yaml"
    calls = []

    def fake_fetch(name, entry, dest, lock_path, registry=None):
        calls.append((name, entry, dest, lock_path, sorted(registry)))
        return dest

    monkeypatch.setattr(datasets.download, "fetch", fake_fetch)
    out, lock = tmp_path / "raw.h5ad", tmp_path / "datasets.lock"
    assert main(["download", "--name", "pancreas", "--registry", str(registry), "--out", str(out),
                 "--lock", str(lock)]) == 0
    (name, entry, dest, lock_path, names), = calls
    assert (name, dest, lock_path) == ("pancreas", out, lock) and "bct" in names  # bct_del derives from bct
    assert entry["url"].startswith("https://") and entry["batch_key"] == "tech"
    assert main(["download", "--name", "lung", "--registry", str(registry), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "no dataset 'lung'" in err and "pancreas" in err
