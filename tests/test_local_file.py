"""file: datasets (datasets/local_file.py): the plan-time checks answer a user's first mistakes in
one line naming the config key; the preprocess job reads the file in place, records its sha256
on first use and refuses it once it changed; bad data in it is a failed-dataset record."""

from __future__ import annotations

import gzip
import json
import os
import time
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.io
import scipy.sparse as sp
import yaml

from datasets.__main__ import main as datasets_main
from datasets.failure import failed_dataset
from datasets.local_file import LocalFileError, check_at_plan, checksum, file_entry, source_id

SECTION = {"path": "mine.h5ad", "batch_key": "sample", "label_key": "cell_type", "counts": "layers/counts"}


def users_adata(n_cells: int = 60, n_genes: int = 40, seed: int = 0) -> ad.AnnData:
    rng = np.random.default_rng(seed)
    counts = sp.csr_matrix(rng.poisson(3.0, size=(n_cells, n_genes)).astype(np.float32))
    adata = ad.AnnData(X=sp.csr_matrix(np.log1p(counts.toarray())),
                       obs=pd.DataFrame({"sample": ["s1", "s2"] * (n_cells // 2),
                                         "cell_type": ["T", "B", "NK"] * (n_cells // 3)},
                                        index=[f"c{i}" for i in range(n_cells)]),
                       var=pd.DataFrame(index=[f"g{j}" for j in range(n_genes)]))
    adata.layers["counts"] = counts
    return adata


@pytest.fixture
def mine(tmp_path) -> Path:
    users_adata().write_h5ad(tmp_path / "mine.h5ad")
    return tmp_path / "mine.h5ad"


def entry_of(tmp_path: Path, **changes) -> dict:
    return file_entry("mine", {**SECTION, **changes}, tmp_path, f"{tmp_path}, the folder of the config file")


def test_relative_path_starts_at_the_config_folder_and_format_comes_from_the_name(mine, tmp_path):
    entry = entry_of(tmp_path)
    assert entry["path"] == str(mine) and entry["format"] == "h5ad" and entry["url"] is None
    assert entry["batch_key"] == "sample" and entry["counts"] == "layers/counts"
    check_at_plan("mine", entry, tmp_path / "lock.yaml")  # a good file passes


@pytest.mark.parametrize(("changes", "setup", "needle"), [
    ({"path": "nothere.h5ad"}, None, "datasets.mine.file.path: {tmp}/nothere.h5ad does not exist (a relative "
                                     "path is relative to {tmp}, the folder of the config file)"),
    ({"path": "mine.csv"}, "csv", "datasets.mine.file.path: cannot tell the format of {tmp}/mine.csv"),
    ({"batch_key": "sampel"}, None, "datasets.mine.file.batch_key: 'sampel' is not an obs column of "
                                    "{tmp}/mine.h5ad; obs columns: sample, cell_type"),
    ({"label_key": "celltype"}, None, "datasets.mine.file.label_key: 'celltype' is not an obs column"),
    ({"counts": "layers/raw"}, None, "datasets.mine.file.counts: {tmp}/mine.h5ad has no layer 'raw'; "
                                     "layers: counts"),
    ({"format": "10x_mtx"}, None, "datasets.mine.file.format: '10x_mtx' does not fit {tmp}/mine.h5ad, which "
                                  "is a file"),
    ({}, "truncated", "datasets.mine.file.path: {tmp}/mine.h5ad cannot be read as h5ad"),
], ids=["missing", "unknown_suffix", "batch_key_typo", "label_key_typo", "no_such_layer", "folder_format",
        "truncated"])
def test_plan_time_mistakes_are_one_line_naming_the_key(mine, tmp_path, changes, setup, needle):
    if setup == "csv":
        (tmp_path / "mine.csv").write_text("a,b\n")
    if setup == "truncated":
        mine.write_bytes(mine.read_bytes()[:3000])
    with pytest.raises(LocalFileError) as err:
        check_at_plan("mine", entry_of(tmp_path, **changes), tmp_path / "lock.yaml")
    assert str(err.value).startswith(needle.format(tmp=tmp_path)), str(err.value)
    assert "\n" not in str(err.value)


def preprocess_file(entry: dict, tmp_path: Path, capsys, *extra: str) -> tuple[int, str]:
    code = datasets_main(["preprocess", "--file-entry", json.dumps(entry), "--lock",
                          str(tmp_path / "lock.yaml"), "--out", str(tmp_path / "out" / "mine.h5ad"), "--name", "mine",
                          "--batch-key", entry["batch_key"], "--label-key", entry["label_key"], "--counts",
                          entry["counts"], "--n-hvg", "20", "--min-genes", "5", "--min-cells", "1", "--n-pcs", "5",
                          *extra])
    return code, capsys.readouterr().err


def test_first_use_records_the_sha256_and_a_changed_file_is_refused(mine, tmp_path, capsys):
    entry = entry_of(tmp_path)
    code, err = preprocess_file(entry, tmp_path, capsys)
    assert code == 0, err
    lock = yaml.safe_load((tmp_path / "lock.yaml").read_text())
    assert lock["mine"][source_id(entry)]["sha256"] == checksum(mine)[0]
    data = ad.read_h5ad(tmp_path / "out" / "mine.h5ad")
    assert data.n_obs == 60 and set(data.obs["label"]) == {"T", "B", "NK"}
    assert checksum(mine)[0] in data.uns["dataset"]["source"]

    users_adata(seed=1).write_h5ad(mine)  # other counts, same keys
    later = time.time() + 5
    os.utime(mine, (later, later))  # modified after the record: the check hashes the file
    with pytest.raises(LocalFileError, match=r"datasets.mine.file.path: .* changed since its sha256 was recorded"):
        check_at_plan("mine", entry, tmp_path / "lock.yaml")
    code, err = preprocess_file(entry, tmp_path, capsys)
    assert code == 2 and "changed since its sha256 was recorded" in err and "delete the 'mine' record" in err


def test_bad_data_in_a_file_is_recorded_as_a_failed_dataset(tmp_path, capsys):
    bad = users_adata()
    bad.layers["counts"] = bad.layers["counts"] * 0.5  # not integer counts
    bad.write_h5ad(tmp_path / "mine.h5ad")
    code, err = preprocess_file(entry_of(tmp_path), tmp_path, capsys, "--record-failure", "--counts-integer", "true")
    assert code == 0 and err.startswith("error: dataset 'mine': the counts matrix (layers/counts) is declared "
                                        "integer but has non-integer values"), err
    record = failed_dataset(tmp_path / "out" / "mine.h5ad")
    assert record["stage"] == "preprocess" and "non-integer values" in record["error"]


def test_10x_matrix_folder_is_read_with_its_checksum_over_every_file(tmp_path, capsys):
    folder = tmp_path / "filtered_feature_bc_matrix"
    folder.mkdir()
    adata = users_adata()
    scipy.io.mmwrite(folder / "matrix.mtx", sp.csr_matrix(adata.layers["counts"].T.astype(np.int64)))
    texts = {"barcodes.tsv": "\n".join(adata.obs_names) + "\n",
             "features.tsv": "\n".join(f"{g}\t{g}\tGene Expression" for g in adata.var_names) + "\n",
             "matrix.mtx": (folder / "matrix.mtx").read_text()}
    (folder / "matrix.mtx").unlink()
    for name, text in texts.items():
        with gzip.open(folder / f"{name}.gz", "wt") as fh:
            fh.write(text)
    entry = file_entry("tenx", {"path": folder.name, "batch_key": "sample", "label_key": None}, tmp_path, "here")
    assert entry["format"] == "10x_mtx"
    sha, size = checksum(folder)
    assert size == sum(p.stat().st_size for p in folder.iterdir())
    with gzip.open(folder / "barcodes.tsv.gz", "wt") as fh:
        fh.write(texts["barcodes.tsv"].replace("c0\n", "x0\n"))
    assert checksum(folder)[0] != sha  # any file of the folder counts
    from datasets.local_file import read_local

    read = read_local("tenx", entry, tmp_path)
    assert read.shape == (60, 40) and read.X.sum() == adata.layers["counts"].sum()
