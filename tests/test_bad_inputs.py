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
import pandas as pd
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

def dry_run(tmp_path: Path, cfg: dict, *extra: str) -> subprocess.CompletedProcess:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return subprocess.run([sys.executable, "-m", "snakemake", "-s", str(REPO / "workflow/Snakefile"),
                           "--configfile", str(path), "--directory", str(tmp_path), "-n", *extra],
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
    (lambda c: c.update(label_transfer={"reference": "Batch1", "datasets": ["sim_bse"]}), "label_transfer.datasets"),
], ids=["threads_0", "params_not_mapping", "dataset_unknown_method", "simulate_and_registry",
        "scaling_method_not_in_study", "n_cells_not_int", "label_transfer_unknown_dataset"])
def test_more_config_errors_name_the_key(tmp_path, change, needle):
    res = dry_run(tmp_path, tiny_with(change))
    assert res.returncode != 0
    text = res.stdout + res.stderr
    line = next((ln for ln in text.splitlines() if "invalid config" in ln), "")
    assert needle in line, text[-2000:]
    assert not (tmp_path / "never").exists()


@pytest.mark.slow
def test_dataset_failing_inside_a_strict_workflow_names_it_and_leaves_no_output(tmp_path):
    """strict: a dataset that loses every cell in QC fails the preprocess job, the reason in its log
    (without strict it is recorded as a failed dataset: tests/test_own_data_and_method.py)."""
    cfg = tiny_with(lambda c: c.update(preprocess={"n_hvg": 100, "min_genes": 100000, "min_cells": 3}, strict=True))
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


# --- issue #17: damaged study files, dataset overrides, simulator sizes, read-only folders --------

def cut_in_half(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def aggregate(tmp_path: Path, files: list[Path]) -> subprocess.CompletedProcess:
    return run_cli("metrics.aggregate", "tables", "--metrics", *map(str, files), "--tables", str(tmp_path / "tables"),
                   "--selection", '{"criterion": "composite", "set": "scib"}')


@pytest.mark.parametrize("damaged", ["run.h5ad", "metrics.json"])
def test_aggregate_records_a_damaged_file_as_a_failed_run_naming_it(tmp_path, damaged):
    """A truncated run or metrics file crashed the tables step with a traceback that named no
    file (and Snakemake then deleted tables/); now that run is failed, with the file and what to
    do, and every other run is in the tables."""
    from study_files import write_study

    files = write_study(tmp_path, {"sim": True}, {"harmony": ["theta-1", "theta-5"]}, seeds=[0, 1],
                        label_missing=[0])
    bad = files[0].with_name(damaged)
    cut_in_half(bad)
    res = aggregate(tmp_path, files)
    assert res.returncode == 0 and "Traceback" not in res.stderr, res.stderr[-2000:]
    runs = pd.read_csv(tmp_path / "tables" / "runs.tsv", sep="\t")
    assert len(runs) == 4 and (runs["status"] == "ok").sum() == 3
    error = runs.loc[runs["status"] == "failed", "error"].item()
    assert error.startswith(f"damaged file: delete {bad} and run Snakemake again"), error
    assert f"error: damaged file: delete {bad}" in res.stderr
    assert {"best.tsv", "summary.tsv", "scores.tsv"} <= {p.name for p in (tmp_path / "tables").iterdir()}


def test_damaged_data_file_stops_the_plan_before_any_run_is_deleted(tmp_path):
    """A damaged data/{dataset}.h5ad made Snakemake redo (and first delete) the good runs of it."""
    cfg = tiny_with(lambda c: None)
    cfg["out"] = "out"
    data = tmp_path / "out" / "data" / "sim_base.h5ad"
    data.parent.mkdir(parents=True)
    data.write_bytes(b"\x89HDF\r\n\x1a\n" + b"\0" * 100)  # an HDF5 signature, then nothing
    run = tmp_path / "out/runs/sim_base/harmony/theta-1/seed0/run.h5ad"
    run.parent.mkdir(parents=True)
    run.write_bytes(b"a good run")
    res = dry_run(tmp_path, cfg)
    assert res.returncode != 0
    line = next((ln for ln in (res.stdout + res.stderr).splitlines() if "is damaged" in ln), "")
    assert line.startswith("out/data/sim_base.h5ad is damaged (") and "delete it and run again" in line, \
        (res.stdout + res.stderr)[-2000:]
    assert "rule integrate" not in res.stdout and run.read_bytes() == b"a good run"


def test_typo_inside_a_datasets_own_preprocess_is_an_error(tmp_path):
    res = dry_run(tmp_path, tiny_with(lambda c: c["datasets"]["sim_base"].update(preprocess={"n_hvgs": 500})))
    assert res.returncode != 0
    line = next((ln for ln in (res.stdout + res.stderr).splitlines() if "invalid config" in ln), "")
    assert "datasets.sim_base.preprocess.n_hvgs: unknown key" in line, (res.stdout + res.stderr)[-2000:]


@pytest.mark.filterwarnings("ignore:Observation names are not unique")
def test_duplicate_cell_advice_names_a_config_key_that_works(raw, tmp_path, capsys):
    code, err, _ = preprocess_cli(modified(raw, duplicate_cells), tmp_path, capsys)
    assert code == 2
    advice = "datasets.toy.preprocess.duplicate_cells: make_unique"
    assert advice in err, err
    cfg = tiny_with(lambda c: c["datasets"]["sim_base"].update(preprocess={"duplicate_cells": "make_unique"}))
    res = dry_run(tmp_path, cfg, "--printshellcmds")
    assert res.returncode == 0, (res.stdout + res.stderr)[-2000:]
    base_cmd = next(ln for ln in res.stdout.splitlines() if "datasets preprocess" in ln and "sim_base" in ln)
    assert "--duplicate-cells make_unique" in base_cmd


def simulate_cli(tmp_path: Path, n_cells: int, n_genes: int, *extra: str) -> subprocess.CompletedProcess:
    return run_cli("datasets", "simulate", "--n-cells", str(n_cells), "--n-genes", str(n_genes), "--seed", "1",
                   "--out", str(tmp_path / "raw.h5ad"), *extra)


def test_simulation_without_cells_is_one_line_not_a_traceback(tmp_path):
    res = simulate_cli(tmp_path, 300, 300)
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert res.stderr.startswith("error: simulation (seed 1): none of the 300 cells has 200 detected genes "
                                 "among 300 genes") and "raise n_genes" in res.stderr, res.stderr
    assert not (tmp_path / "raw.h5ad").exists()
    recorded = simulate_cli(tmp_path, 300, 300, "--record-failure", "--name", "tiny")
    assert recorded.returncode == 0
    from datasets.failure import failed_dataset

    assert failed_dataset(tmp_path / "raw.h5ad")["error"].startswith("simulation (seed 1): none of the 300")


def test_simulation_says_how_many_cells_it_kept_and_why(tmp_path):
    res = simulate_cli(tmp_path, 400, 600)
    assert res.returncode == 0
    kept = ad.read_h5ad(tmp_path / "raw.h5ad").n_obs
    line = next(ln for ln in res.stderr.splitlines() if "simulated 400 cells" in ln)
    assert line.startswith("warning: simulated 400 cells x 600 genes") and f"kept {kept}" in line
    assert "raise n_genes" in line and kept < 200


def read_only_folder(path: Path) -> Path:
    """A folder nobody writes into: chmod for a normal user; root ignores that, so the immutable
    flag (chattr +i) there. Skips when neither works (a container without CAP_LINUX_IMMUTABLE)."""
    path.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0:
        path.chmod(0o555)
    elif subprocess.run(["chattr", "+i", str(path)], capture_output=True).returncode != 0:
        pytest.skip("cannot make a folder read-only for root here (chattr +i failed)")
    return path


def writable_again(path: Path) -> None:
    if os.geteuid() != 0:
        path.chmod(0o755)
    else:
        subprocess.run(["chattr", "-i", str(path)], check=True)


def test_run_into_a_read_only_folder_says_so_in_one_line(sim_small_path, tmp_path):
    folder = read_only_folder(tmp_path / "runs" / "seed0")
    try:
        res = run_cli("methods", "run", "--data", str(sim_small_path), "--out", str(folder / "run.h5ad"),
                      "--method", "unintegrated")
    finally:
        writable_again(folder)
    assert res.returncode == 2 and "Traceback" not in res.stderr, res.stderr[-2000:]
    assert res.stderr.startswith(f"error: cannot write the run file in {folder}") and "writable" in res.stderr
    assert list(folder.iterdir()) == []


def test_study_with_a_read_only_folder_stops_at_start_naming_it(tmp_path):
    """A study whose output folder turned read-only failed its jobs with empty logs; now the start
    names the folder, before any job."""
    cfg = tiny_with(lambda c: c.pop("scaling"))
    cfg["out"] = "out"
    cfg["datasets"] = {"sim_base": cfg["datasets"]["sim_base"]}
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(cfg))
    logs = read_only_folder(tmp_path / "out" / "logs")
    try:
        res = subprocess.run([sys.executable, "-m", "snakemake", "-s", str(REPO / "workflow/Snakefile"),
                              "--configfile", str(tmp_path / "config.yaml"), "--directory", str(tmp_path),
                              "--cores", "1"], cwd=tmp_path, env=env(), capture_output=True, text=True, timeout=300)
    finally:
        writable_again(logs)
    text = res.stdout + res.stderr
    assert res.returncode != 0
    assert "out/logs is not writable: the study writes its results under out; make it writable" in text, text[-2000:]
    assert not (tmp_path / "out" / "data").exists()  # no job ran
