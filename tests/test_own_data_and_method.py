"""Your own data and your own method, end to end through Snakemake and the report (issue #17).

One small study, run once per session: a local h5ad named in the config (``file:``, with its own
key names and counts in a layer), the same file without its labels, a second local file that is
bad (one batch only), and a method
that lives in a temporary folder outside the repo (a .py file with a SPEC dict, importing a file
beside it) next to a built-in one. The config sits in its own folder and names both by relative
paths; Snakemake runs in yet another working directory. Then, on copies of the finished study:
a changed local file is refused at start, and deleted data and run files are redone.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import yaml

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_e2e import log_tail, study_env  # noqa: E402

MY_METHOD = '''"""Batch-centred PCA: a user's own method, outside the repo."""
import numpy as np
from centring import centre_batches  # a file beside this one

from methods.base import IntegrationResult

SPEC = {"output": "embedding", "input": "lognorm", "env": "harmony", "defaults": {"n_comps": 20},
        "description": "batch-centred PCA (test)"}


def integrate(adata, *, batch_key, label_key, params, seed, device):
    from sklearn.decomposition import PCA

    X = centre_batches(adata.X.toarray(), adata.obs[batch_key].astype(str).to_numpy())
    return IntegrationResult(embedding=PCA(n_components=params["n_comps"], random_state=seed).fit_transform(X))
'''

CENTRING = '''import numpy as np


def centre_batches(X, batches):
    X = np.array(X, dtype=np.float32)
    for b in np.unique(batches):
        X[batches == b] -= X[batches == b].mean(axis=0)
    return X
'''

CONFIG = {
    "out": "../out",  # the working directory is the study's run/ folder (below)
    "seeds": [0],
    "datasets": {
        "mine": {"file": {"path": "../mydata/mine.h5ad", "batch_key": "sample", "label_key": "cell_type",
                          "counts": "layers/counts"}},
        "onebatch": {"file": {"path": "../mydata/onebatch.h5ad", "batch_key": "sample",
                              "label_key": "cell_type", "counts": "layers/counts"}},
        # no label_key: bio metrics NA, best settings chosen by the label-free criterion (issue #14)
        "nolabels": {"file": {"path": "../mydata/nolabels.h5ad", "batch_key": "sample", "counts": "layers/counts"}},
    },
    "preprocess": {"n_hvg": 200, "min_genes": 50, "min_cells": 3},
    "methods": {"unintegrated": None, "my_pca": {"module": "../mymethods/my_pca.py", "grid": {"n_comps": [10, 20]}}},
    "metrics": {"n_neighbors": 50},
    "report": {"umap_max_cells": 300},
}


def users_h5ad(path: Path, one_batch: bool = False) -> None:
    """A user's h5ad: log-normalized X, raw counts in layers['counts'], keys sample / cell_type."""
    from datasets.simulate import simulate

    sim = simulate(n_cells=600, n_genes=2000, seed=5)
    adata = ad.AnnData(X=sp.csr_matrix(np.log1p(sim.X.astype(np.float32))), var=pd.DataFrame(index=sim.var_names),
                       obs=pd.DataFrame({"sample": sim.obs["batch"].astype(str).to_numpy(),
                                         "cell_type": sim.obs["celltype"].astype(str).to_numpy()},
                                        index=sim.obs_names))
    adata.layers["counts"] = sim.X.copy()
    if one_batch:
        adata.obs["sample"] = "S1"
    path.parent.mkdir(parents=True, exist_ok=True)
    adata.write_h5ad(path)


def snakemake(base: Path, *extra: str, timeout: float = 1200) -> subprocess.CompletedProcess:
    """Snakemake in ``base/run`` with the config of ``base/study``; the lock file is the study's own."""
    cmd = [sys.executable, "-m", "snakemake", "-s", str(REPO / "workflow" / "Snakefile"), "--configfile",
           str(base / "study" / "config.yaml"), "--directory", str(base / "run"), "--cores", "2",
           "--config", f"lock={base / 'datasets.lock'}", *extra]
    return subprocess.run(cmd, cwd=base / "run", env=study_env(), capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="session")
def own_study(tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    base = tmp_path_factory.mktemp("own_study")
    users_h5ad(base / "mydata" / "mine.h5ad")
    users_h5ad(base / "mydata" / "nolabels.h5ad")
    users_h5ad(base / "mydata" / "onebatch.h5ad", one_batch=True)
    (base / "mymethods").mkdir()
    (base / "mymethods" / "my_pca.py").write_text(MY_METHOD)
    (base / "mymethods" / "centring.py").write_text(CENTRING)
    (base / "study").mkdir()
    (base / "study" / "config.yaml").write_text(yaml.safe_dump(CONFIG))
    (base / "run").mkdir()
    res = snakemake(base)
    assert res.returncode == 0, log_tail(res, 5000)
    return base, res


def table(base: Path, name: str) -> pd.DataFrame:
    return pd.read_csv(base / "out" / "tables" / name, sep="\t")


def test_own_data_and_method_are_run_scored_selected_and_reported(own_study):
    base, res = own_study
    runs = table(base, "runs.tsv")
    mine = runs[runs["dataset"] == "mine"]
    assert sorted(zip(mine["method"], mine["setting"])) == [
        ("my_pca", "n_comps-10"), ("my_pca", "n_comps-20"), ("unintegrated", "default")]
    assert (mine["status"] == "ok").all(), mine[["method", "error"]]
    metrics = table(base, "metrics.tsv")
    mine_pca = metrics[(metrics["dataset"] == "mine") & (metrics["method"] == "my_pca")]
    assert mine_pca.dropna(subset=["value"])["metric_type"].isin(["bio", "batch"]).sum() >= 10
    # batch-centring removes the simulated batch effect that plain PCA keeps
    ilisi = mine_pca[mine_pca["metric"] == "ilisi"]["value"].max()
    ilisi_pca = metrics[(metrics["dataset"] == "mine") & (metrics["method"] == "unintegrated")
                        & (metrics["metric"] == "ilisi")]["value"].item()
    assert ilisi > ilisi_pca + 0.1, (ilisi, ilisi_pca)
    best = table(base, "best.tsv")
    assert set(best[best["dataset"] == "mine"]["method"]) == {"my_pca", "unintegrated"}
    page = (base / "out" / "report.html").read_text()
    assert "my_pca" in page and "mine" in page
    record = json.loads(ad.read_h5ad(base / "out/runs/mine/my_pca/n_comps-10/seed0/run.h5ad", backed="r")
                        .uns["run_json"])
    assert record["params"] == {"n_comps": 10} and record["status"] == "ok"


def test_an_unlabelled_dataset_is_selected_label_free_and_the_report_says_so(own_study):
    base, _ = own_study
    runs = table(base, "runs.tsv")
    assert (runs[runs["dataset"] == "nolabels"]["status"] == "ok").all()
    metrics = table(base, "metrics.tsv")
    nolabels = metrics[metrics["dataset"] == "nolabels"].set_index(["method", "setting", "metric"])
    assert np.isnan(nolabels.loc[("my_pca", "n_comps-10", "nmi"), "value"])  # no labels
    best = table(base, "best.tsv").set_index(["dataset", "method"])
    assert set(best.loc["nolabels", "criterion"]) == {"unsupervised"}
    assert set(best.loc["nolabels", "criterion_source"]) == {"automatic: dataset unlabelled"}
    assert set(best.loc["mine", "criterion"]) == {"composite"}
    page = (base / "out" / "report.html").read_text()
    assert "best settings chosen by the label-free score" in page
    line = next(ln for ln in page.splitlines() if "best settings chosen by the label-free score" in ln)
    assert "automatic: dataset unlabelled" in line and "nolabels" in line


def test_own_file_is_read_in_place_and_recorded_in_the_lock_file(own_study):
    base, _ = own_study
    from datasets.local_file import checksum

    source = base / "mydata" / "mine.h5ad"
    lock = yaml.safe_load((base / "datasets.lock").read_text())
    assert lock["mine"][source.resolve().as_uri()]["sha256"] == checksum(source)[0]
    used = json.loads((base / "out" / "config_used.json").read_text())
    assert used["datasets"]["mine"]["file"]["path"] == str(source.resolve())  # relative to the config's folder
    data = ad.read_h5ad(base / "out" / "data" / "mine.h5ad", backed="r")
    assert data.uns["dataset"]["batch_key"] == "sample" and checksum(source)[0] in data.uns["dataset"]["source"]
    assert not (base / "out" / "data" / "raw").exists()  # no copy of the user's file


def test_a_bad_dataset_is_failed_in_the_report_and_the_others_go_on(own_study):
    base, res = own_study
    runs = table(base, "runs.tsv")
    bad = runs[runs["dataset"] == "onebatch"]
    assert len(bad) == 3 and (bad["status"] == "failed").all()
    assert bad["error"].str.startswith("dataset failed before integration (preprocess): dataset 'onebatch': "
                                       "obs['sample'] has 1 batch(es) (S1)").all(), bad["error"]
    assert "failed dataset: onebatch (3 runs)" in res.stdout + res.stderr
    page = (base / "out" / "report.html").read_text()
    assert page.count("obs[&#x27;sample&#x27;] has 1 batch(es)") + page.count("obs['sample'] has 1 batch(es)") >= 3


def copy_study(base: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "study_copy"
    shutil.copytree(base, copy, symlinks=True)  # relative paths and file dates are kept
    return copy


def test_a_changed_own_file_is_refused_at_start(own_study, tmp_path):
    copy = copy_study(own_study[0], tmp_path)
    lock = yaml.safe_load((copy / "datasets.lock").read_text())
    (copy / "datasets.lock").write_text(yaml.safe_dump({  # the records of the copied files
        name: {(copy / "mydata" / f"{name}.h5ad").resolve().as_uri(): next(iter(records.values()))}
        for name, records in lock.items()}))
    users_h5ad(copy / "mydata" / "mine.h5ad", one_batch=False)
    adata = ad.read_h5ad(copy / "mydata" / "mine.h5ad")
    adata.obs["cell_type"] = "relabelled"
    adata.write_h5ad(copy / "mydata" / "mine.h5ad")
    res = snakemake(copy, "-n", timeout=300)
    assert res.returncode != 0
    line = next((ln for ln in (res.stdout + res.stderr).splitlines() if "changed since" in ln), "")
    assert line.startswith("invalid config: datasets.mine.file.path: ") and "datasets.lock" in line, log_tail(res)
    assert "delete the 'mine' record" in line


def test_deleted_data_and_run_files_are_redone(own_study, tmp_path):
    """Deleting files (e.g. after a damaged one was named) made Snakemake say 'Nothing to be done'
    while the tables still listed them; now they are redone, and only they and what needs them."""
    copy = copy_study(own_study[0], tmp_path)
    # the copy's absolute paths differ (a file: dataset's path is a parameter): dates decide here
    dates_only = ("--rerun-triggers", "mtime")
    (copy / "out/runs/mine/my_pca/n_comps-20/seed0/run.h5ad").unlink()
    jobs = planned_jobs(snakemake(copy, "-n", *dates_only, timeout=300))
    assert jobs == {"integrate": 1, "metrics_mine_all": 1, "aggregate": 1, "claims": 1, "report": 1, "claims_page": 1, "all": 1}, jobs
    (copy / "out/data/mine.h5ad").unlink()
    jobs = planned_jobs(snakemake(copy, "-n", *dates_only, timeout=300))
    assert jobs == {"preprocess": 1, "batch_strength": 1, "batch_strength_table": 1, "integrate": 3,
                    "metrics_mine_all": 1, "aggregate": 1, "claims": 1, "report": 1, "claims_page": 1, "all": 1}, jobs


def planned_jobs(res: subprocess.CompletedProcess) -> dict[str, int]:
    """rule -> count from a dry run's "Job stats" table."""
    assert res.returncode == 0, log_tail(res)
    assert "Job stats:" in res.stdout, log_tail(res)
    rows = res.stdout.split("Job stats:")[1].split("total")[0].splitlines()[3:]
    return {rule: int(n) for rule, n in (row.split()[:2] for row in rows if row.strip())}
