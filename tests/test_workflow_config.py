"""Config validation at start: a bad config fails with one line naming the bad key."""

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


def test_scaling_only_dataset_is_subsampled_but_not_scored(tmp_path):
    def scaling_only(cfg):
        cfg["datasets"]["sim_large"] = {"simulate": {"scenario": "baseline", "seed": 3, "n_cells": 3000,
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
