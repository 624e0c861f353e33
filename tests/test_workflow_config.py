"""Config validation at start: a bad config fails with one line naming the bad key."""

import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
TINY = yaml.safe_load((REPO / "tests/configs/tiny.yaml").read_text())


def dry_run(tmp_path, cfg):
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return subprocess.run(
        [sys.executable, "-m", "snakemake", "-s", "workflow/Snakefile", "--configfile", str(path), "-n",
         "--directory", str(REPO)],
        cwd=REPO, capture_output=True, text=True, timeout=120)


def mutate(fn):
    cfg = yaml.safe_load(yaml.safe_dump(TINY))
    cfg["out"] = "results/never"
    fn(cfg)
    return cfg


@pytest.mark.parametrize("change,needle", [
    (lambda c: c.update(seedz=[0]), "seedz"),  # a typo at top level
    (lambda c: c["methods"].update(harmonee={}), "harmonee"),  # unknown method
    (lambda c: c["methods"]["harmony"].update(grid={"theta": 2}), "methods.harmony.grid.theta"),  # malformed grid
    (lambda c: c["methods"]["harmony"].update(grid={"thta": [1]}), "thta"),  # unknown parameter
    (lambda c: c["datasets"]["sim_base"]["simulate"].update(scenario="common-4"), "datasets.sim_base.simulate.scenario"),
    (lambda c: c.update(label_missing=[1.5]), "label_missing"),
    (lambda c: c["scaling"].update(dataset="nope"), "scaling.dataset"),
    (lambda c: c["scaling"].update(method_sizes={"combat": [100]}), "scaling.method_sizes"),
    (lambda c: c["datasets"].update(real={"registry": "no_such_dataset"}), "no_such_dataset"),
    (lambda c: c["datasets"]["sim_base"].update(selection={"criterion": "labels"}),
     "datasets.sim_base.selection.criterion"),
    (lambda c: c.update(selection={"failed_seeds": "drop"}), "selection.failed_seeds"),
    (lambda c: c["methods"].update(mine={"module": "nothere.py"}), "methods.mine.module: "),
    (lambda c: c["datasets"].update(mine={"file": {"path": "nothere.h5ad", "batch_key": "b"}}),
     "datasets.mine.file.path: "),
])
def test_bad_config_fails_naming_the_key(tmp_path, change, needle):
    res = dry_run(tmp_path, mutate(change))
    assert res.returncode != 0
    err = res.stdout + res.stderr
    line = next((ln for ln in err.splitlines() if "invalid config" in ln), "")
    assert needle in line, err[-2000:]


def test_tiny_config_plans(tmp_path):
    res = dry_run(tmp_path, mutate(lambda c: None))
    assert res.returncode == 0, res.stderr[-2000:]
    # 2 datasets x 2 methods x 2 settings x 2 seeds
    assert res.stdout.count("rule integrate:") == 16


JOB_RE = re.compile(r"^(?:local)?rule (\w+):\n((?:[ \t]+\w+: .*\n)+)", re.MULTILINE)


def planned_jobs(log: str) -> list[tuple[str, dict[str, str]]]:
    """(rule, fields) of every job block a dry-run prints; resources and wildcards as dicts."""
    jobs = []
    for rule, block in JOB_RE.findall(log):
        fields = dict(line.strip().split(": ", 1) for line in block.splitlines())
        fields["resources"] = dict(kv.split("=", 1) for kv in fields.get("resources", "").split(", ") if "=" in kv)
        fields["wildcards"] = dict(kv.split("=", 1) for kv in fields.get("wildcards", "").split(", ") if "=" in kv)
        jobs.append((rule, fields))
    return jobs


@pytest.mark.parametrize("name,min_integrate", [("paper", 1000), ("simulation", 700)])  # 100 sims x 7 methods
def test_full_study_configs_plan_without_downloading(tmp_path, name, min_integrate):
    res = subprocess.run(
        [sys.executable, "-m", "snakemake", "-s", str(REPO / "workflow/Snakefile"), "--configfile",
         str(REPO / "config" / f"{name}.yaml"), "-n", "--directory", str(tmp_path)],
        cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    counts = dict(line.split()[:2] for line in res.stdout.splitlines()
                  if line.split()[:1] and line.split()[0] in ("integrate", "download", "simulate"))
    assert int(counts["integrate"]) >= min_integrate
    assert ("download" in counts) == (name == "paper")
    if name == "paper":
        assert_paper_jobs_fit_a_cluster(planned_jobs(res.stdout))


def test_dataset_selection_reaches_the_tables_step(tmp_path):
    cfg = mutate(lambda c: c["datasets"]["sim_base"].update(selection={"criterion": "unsupervised"}))
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(cfg))
    res = subprocess.run(
        [sys.executable, "-m", "snakemake", "-s", "workflow/Snakefile", "--configfile", str(path), "-n", "-p",
         "--directory", str(REPO), "results/never/tables/best.tsv"],
        cwd=REPO, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]
    command = next(ln for ln in res.stdout.splitlines() if "metrics.aggregate tables" in ln)
    assert '"datasets": {"sim_base": {"criterion": "unsupervised"}}' in command
    assert '"failed_seeds": "rank_below"' in command  # the schema default is passed on


def assert_paper_jobs_fit_a_cluster(jobs):
    """The heart atlas (486k cells) is scored one run per job, small datasets many runs to a job;
    memory requests grow with the dataset."""
    heart_scoring = [f for r, f in jobs if r == "metrics_run" and f["wildcards"]["dataset"] == "heart"]
    heart_runs = [f for r, f in jobs if r == "integrate" and f["wildcards"]["dataset"] == "heart"]
    assert len(heart_scoring) == len(heart_runs) > 200
    pancreas_scoring = [f for r, f in jobs if r.startswith("metrics_pancreas_")]
    assert 1 < len(pancreas_scoring) < len(heart_scoring) / 4
    mem = {(f["wildcards"]["dataset"], f["wildcards"]["method"]): int(f["resources"]["mem_mb"])
           for r, f in jobs if r == "integrate"}
    for method in ("scanorama", "combat", "scvi", "seurat_cca"):
        assert mem[("jurkat_293t", method)] < mem[("pancreas", method)] < mem[("heart", method)], method
    assert mem[("heart", "scanorama")] > 40_000  # 486k cells: ~5x the README's 11.3 GB at 100k
    assert int(heart_scoring[0]["resources"]["mem_mb"]) > int(pancreas_scoring[0]["resources"]["mem_mb"])


def test_config_values_alone_keep_the_default_study(tmp_path):
    """--config without --configfile changes the default study instead of replacing it."""
    res = subprocess.run(
        [sys.executable, "-m", "snakemake", "-s", str(REPO / "workflow/Snakefile"), "-n", "--directory",
         str(tmp_path), "--config", f"out={tmp_path / 'study'}"],
        cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, (res.stdout + res.stderr)[-2000:]
    runs = [f["output"] for r, f in planned_jobs(res.stdout) if r == "integrate"]
    default = yaml.safe_load((REPO / "config/config.yaml").read_text())
    integrated = {name for name, entry in default["datasets"].items() if entry.get("methods") != []}
    assert {Path(o).parts[-5] for o in runs} == integrated  # (a scaling-only dataset has no runs)
    assert all(o.startswith(str(tmp_path / "study")) for o in runs)


def test_a_config_in_another_folder_runs_in_another_working_directory(tmp_path):
    """Paths of the repo (registry, lock file) resolve against the repo, not the working directory."""
    (tmp_path / "configs").mkdir()
    cfg = {"out": "study", "datasets": {"pancreas": {"registry": "pancreas"}}, "methods": {"harmony": None}}
    (tmp_path / "configs" / "study.yaml").write_text(yaml.safe_dump(cfg))
    workdir = tmp_path / "work"
    workdir.mkdir()
    res = subprocess.run(
        [sys.executable, "-m", "snakemake", "-s", str(REPO / "workflow/Snakefile"), "-n", "-p",
         "--configfile", str(tmp_path / "configs" / "study.yaml"), "--directory", str(workdir)],
        cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, (res.stdout + res.stderr)[-2000:]
    download = next(line for line in res.stdout.splitlines() if "python -m datasets download" in line)
    assert f"--lock {REPO / 'config/datasets.lock'} " in download
    assert f"--registry {REPO / 'config/datasets.yaml'} " in download


def test_scaling_only_dataset_is_subsampled_but_not_scored(tmp_path):
    def scaling_only(cfg):
        cfg["datasets"]["sim_large"] = {"simulate": {"scenario": "baseline", "seed": 3, "n_cells": 30000,
                                                     "n_genes": 1500}, "methods": []}
        cfg["scaling"].update(dataset="sim_large", sizes=[300, 3000], method_sizes={"unintegrated": [300, 3000, 30000]})

    res = dry_run(tmp_path, mutate(scaling_only))
    assert res.returncode == 0, res.stderr[-2000:]
    plan = res.stdout
    assert plan.count("rule integrate:") == 16  # only the two scored datasets' runs
    # on the scaling-only dataset: harmony at 2 sizes, unintegrated at its own 3 (method_sizes)
    assert plan.count("rule integrate_scaling:") == 5 and "scaling/sim_large/unintegrated/n30000" in plan
    assert "scaling/sim_large/harmony/n30000" not in plan
    assert "runs/sim_large" not in plan and "metrics_sim_large" not in plan
    assert "batch_strength/sim_large" not in plan  # not scored: no row in the datasets section
    assert plan.count("rule batch_strength:") == 2 and "rule claims:" in plan
