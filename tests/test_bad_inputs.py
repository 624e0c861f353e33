"""Bad input at the CLI and workflow level: a clear error naming the problem, nothing half-written.

tests/test_ingest.py unit-tests the validation itself (and one CLI call); tests/test_runner.py the
runner's failure recording; tests/test_workflow_config.py eight config errors. This file covers
what they lack: each bad dataset through ``python -m datasets preprocess`` (exit 2, one line,
no output, no temporary), corrupt files, inputs that are odd but valid (kept, not rejected),
``python -m methods run`` misuse, further config errors, and a dataset failing inside Snakemake.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import anndata as ad
import numpy as np
import pytest
import scipy.sparse as sp
import yaml

from datasets import write_h5ad_atomic
from datasets.__main__ import main as datasets_main
from datasets.simulate import published_params, splat_simulate

REPO = Path(__file__).resolve().parents[1]
TINY = yaml.safe_load((REPO / "tests/configs/tiny.yaml").read_text())


@pytest.fixture(scope="module")
def raw():
    """Raw simulated counts: 200 cells x 400 genes, Batch1/Batch2 (100 each), celltype Group1..7."""
    return splat_simulate(published_params(n_cells=200, n_genes=400), seed=11)


def env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
            "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}


def preprocess_cli(raw_adata, folder: Path, capsys, *extra: str) -> tuple[int, str, Path]:
    """Write ``raw_adata`` and run ``python -m datasets preprocess`` in-process on it."""
    raw_path = write_h5ad_atomic(raw_adata, folder / "raw.h5ad")
    out = folder / "data.h5ad"
    code = datasets_main(["preprocess", "--raw", str(raw_path), "--out", str(out), "--name", "toy",
                          "--batch-key", "batch", "--label-key", "celltype", "--n-hvg", "100",
                          "--min-genes", "20", *extra])
    return code, capsys.readouterr().err, out


def modified(adata, change):
    out = adata.copy()
    change(out)
    return out


def set_first(column: str, values: list[str]):
    def change(a):
        a.obs[column] = a.obs[column].astype(str)
        a.obs.iloc[:len(values), a.obs.columns.get_loc(column)] = values
    return change


def set_matrix_value(value: float):
    def change(a):
        dense = a.X.toarray().astype(np.float32)
        dense[3, 5] = value
        a.X = sp.csr_matrix(dense)
    return change


def scale_counts(a):
    a.X = a.X.astype(np.float32) * 1.5


def one_batch(a):
    a.obs["batch"] = "Batch1"


def duplicate_cells(a):
    a.obs_names = ["same", "same"] + list(a.obs_names[2:])


@pytest.mark.filterwarnings("ignore:Observation names are not unique")
@pytest.mark.parametrize(("change", "extra", "needle"), [
    (one_batch, [], "obs['batch'] has 1 batch(es) (Batch1)"),
    (set_matrix_value(np.nan), [], "1 NaN and 0 infinite"),
    (set_matrix_value(np.inf), [], "0 NaN and 1 infinite"),
    (set_matrix_value(-1.0), [], "1 negative values"),
    (scale_counts, [], "non-integer values"),
    (duplicate_cells, [], "duplicated names (e.g. same)"),
    (set_first("batch", ["Batch3", "Batch3"]), [], "fewer than 3 cells after QC: Batch3 (2)"),
    (lambda a: None, ["--min-genes", "100000"], "no data left after QC"),
    (lambda a: None, ["--batch-key", "tech"], "obs has no column 'tech'"),
], ids=["one_batch", "nan", "inf", "negative", "float_counts", "duplicated_cells", "two_cell_batch",
        "all_cells_filtered", "wrong_batch_key"])
def test_bad_dataset_fails_in_one_line_and_writes_nothing(raw, tmp_path, capsys, change, extra, needle):
    code, err, out = preprocess_cli(modified(raw, change), tmp_path, capsys, *extra)
    assert code == 2
    assert err.startswith("error: ") and err.count("\n") == 1 and needle in err, err
    assert "toy" in err or "tech" in err  # the dataset (or its missing key) is named
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["raw.h5ad"]


def test_odd_but_valid_datasets_are_kept(raw, tmp_path, capsys):
    """Empty cells/genes are filtered by QC; a one-cell type and a single cell type pass through."""
    def empties(a):
        dense = a.X.toarray()
        dense[:5] = 0
        dense[:, :7] = 0
        a.X = sp.csr_matrix(dense)

    code, err, out = preprocess_cli(modified(raw, empties), tmp_path / "empties", capsys)
    assert code == 0, err
    data = ad.read_h5ad(out)
    assert data.n_obs == 195 and data.uns["dataset"]["n_genes_qc"] <= 393
    assert (np.asarray(data.layers["counts"].sum(axis=1)).ravel() > 0).all()

    code, err, out = preprocess_cli(modified(raw, set_first("celltype", ["Rare"])), tmp_path / "rare", capsys)
    assert code == 0, err
    assert (ad.read_h5ad(out).obs["label"] == "Rare").sum() == 1

    code, err, out = preprocess_cli(modified(raw, lambda a: a.obs.__setitem__("celltype", "T")),
                                    tmp_path / "one_type", capsys)
    assert code == 0, err
    assert list(ad.read_h5ad(out).obs["label"].cat.categories) == ["T"]


def run_cli(module: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", module, *args], cwd=REPO, env=env(), capture_output=True,
                          text=True, timeout=300)


def truncated_copy(path: Path, dest: Path) -> Path:
    dest.write_bytes(path.read_bytes()[:20_000])
    return dest


def test_truncated_raw_file_is_named_without_traceback(sim_small_path, tmp_path):
    bad = truncated_copy(Path(sim_small_path), tmp_path / "cut.h5ad")
    out = tmp_path / "data.h5ad"
    res = run_cli("datasets", "preprocess", "--raw", str(bad), "--out", str(out), "--name", "toy",
                  "--batch-key", "batch")
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert res.stderr.startswith(f"error: cannot read '{bad}' as h5ad") and "truncated" in res.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cut.h5ad"]


def test_truncated_data_file_fails_the_run_command_and_writes_nothing(sim_small_path, tmp_path):
    bad = truncated_copy(Path(sim_small_path), tmp_path / "cut.h5ad")
    out = tmp_path / "runs" / "run.h5ad"
    res = run_cli("methods", "run", "--data", str(bad), "--out", str(out), "--method", "unintegrated")
    assert res.returncode != 0
    assert not out.exists()
    assert not out.parent.exists() or list(out.parent.iterdir()) == []  # no temporary, no .err file


def test_truncated_data_file_error_names_the_file(sim_small_path, tmp_path):
    bad = truncated_copy(Path(sim_small_path), tmp_path / "cut.h5ad")
    res = run_cli("methods", "run", "--data", str(bad), "--out", str(tmp_path / "run.h5ad"), "--method",
                  "unintegrated")
    assert "Traceback" not in res.stderr and str(bad) in res.stderr


def test_run_command_rejects_malformed_params_before_writing(sim_small_path, tmp_path):
    out = tmp_path / "runs" / "run.h5ad"
    res = run_cli("methods", "run", "--data", str(sim_small_path), "--out", str(out), "--method", "harmony",
                  "--params", "{theta: 2")
    assert res.returncode == 2 and "--params is not valid JSON" in res.stderr
    assert not out.parent.exists()


def test_unknown_method_is_a_complete_failed_record_and_fatal_when_strict(sim_small_path, tmp_path):
    from methods.runner import read_run_info

    out = tmp_path / "a" / "run.h5ad"
    res = run_cli("methods", "run", "--data", str(sim_small_path), "--out", str(out), "--method", "harmonee")
    assert res.returncode == 0 and "failed" in res.stdout
    rec = read_run_info(out)
    assert rec["status"] == "failed" and "unknown method 'harmonee'" in rec["error"] and "harmony" in rec["error"]
    strict = run_cli("methods", "run", "--data", str(sim_small_path), "--out", str(tmp_path / "b" / "run.h5ad"),
                     "--method", "harmonee", "--strict")
    assert strict.returncode != 0 and "unknown method 'harmonee'" in strict.stderr
    for folder in (tmp_path / "a", tmp_path / "b"):
        assert [p.name for p in folder.iterdir()] == ["run.h5ad"]  # no temporary or .err file left


# --- config errors test_workflow_config.py does not cover --------------------------------------------

def dry_run(tmp_path: Path, cfg: dict) -> subprocess.CompletedProcess:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return subprocess.run([sys.executable, "-m", "snakemake", "-s", str(REPO / "workflow/Snakefile"),
                           "--configfile", str(path), "--directory", str(tmp_path), "-n"],
                          cwd=tmp_path, env=env(), capture_output=True, text=True, timeout=300)


def tiny_with(change) -> dict:
    cfg = yaml.safe_load(yaml.safe_dump(TINY))
    cfg["out"] = "never"
    change(cfg)
    return cfg


@pytest.mark.parametrize(("change", "needle"), [
    (lambda c: c.update(threads=0), "threads"),
    (lambda c: c["methods"].update(harmony={"params": 3}), "methods.harmony"),
    (lambda c: c["datasets"]["sim_base"].update(methods=["harmonee"]), "datasets.sim_base.methods"),
    (lambda c: c["datasets"]["sim_base"].update(registry="pancreas"), "datasets.sim_base"),
    (lambda c: c["scaling"].update(methods=["scvi"]), "scaling.methods"),
    (lambda c: c["datasets"]["sim_base"]["simulate"].update(n_cells="many"), "datasets.sim_base.simulate.n_cells"),
], ids=["threads_0", "params_not_mapping", "dataset_unknown_method", "simulate_and_registry",
        "scaling_method_not_in_study", "n_cells_not_int"])
def test_more_config_errors_name_the_key(tmp_path, change, needle):
    res = dry_run(tmp_path, tiny_with(change))
    assert res.returncode != 0
    text = res.stdout + res.stderr
    line = next((ln for ln in text.splitlines() if "invalid config" in ln), "")
    assert needle in line, text[-2000:]
    assert not (tmp_path / "never").exists()


@pytest.mark.slow
def test_dataset_failing_inside_the_workflow_names_it_and_leaves_no_output(tmp_path):
    """A dataset that loses every cell in QC: the preprocess job fails with the reason in its log."""
    cfg = tiny_with(lambda c: c.update(preprocess={"n_hvg": 100, "min_genes": 100000, "min_cells": 3}))
    cfg["out"] = str(tmp_path / "out")
    cfg["datasets"] = {"sim_base": cfg["datasets"]["sim_base"]}
    cfg.pop("scaling")
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(cfg))
    res = subprocess.run([sys.executable, "-m", "snakemake", "-s", str(REPO / "workflow/Snakefile"),
                          "--configfile", str(tmp_path / "config.yaml"), "--directory", str(tmp_path),
                          "--cores", "1", "--until", "preprocess"],
                         cwd=tmp_path, env=env(), capture_output=True, text=True, timeout=600)
    assert res.returncode != 0
    log = (tmp_path / "out/logs/preprocess/sim_base.log").read_text()
    assert log.strip() == ("error: dataset 'sim_base': no data left after QC (0 cells x 0 genes); "
                           "lower min_genes / min_cells"), log
    assert "no data left after QC" in res.stdout + res.stderr  # show-failed-logs puts it on the console
    data_dir = tmp_path / "out/data"
    assert not (data_dir / "sim_base.h5ad").exists()
    assert not [p for p in data_dir.iterdir() if p.is_file()]
