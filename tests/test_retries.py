"""Through Snakemake: a run out of memory is retried with more memory and recorded as failed only
after the last attempt; a run that fits the second attempt's memory succeeds there; the console
ends with the number of failed runs and where to read why.

``max_mem_mb: job`` makes the runner enforce each job's own memory request (which grows with
the attempt), so this runs locally with ``--retries 2``. The methods are the test module
fake_methods, registered in every Python process of the study (Snakemake's and each job's) by a
sitecustomize.py on PYTHONPATH.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest
import yaml
from test_e2e import REPO, log_tail, run_record, snakemake_cmd, study_env

pytestmark = pytest.mark.slow

SITECUSTOMIZE = """\
import sys
sys.path.insert(0, {tests!r})
from methods import registry
from methods.registry import MethodSpec
registry.METHODS["fake"] = MethodSpec("fake_methods", "embedding", "lognorm", "harmony",
                                      defaults={{"mode": "ok", "mb": 0, "seconds": 0}})
"""
STUDY = {
    "seeds": [0],
    "max_mem_mb": "job",
    "datasets": {"sim_retry": {"simulate": {"scenario": "baseline", "seed": 6, "n_cells": 300, "n_genes": 600}}},
    "preprocess": {"n_hvg": 150, "min_genes": 50, "min_cells": 3},
    # the first attempt of a run this small asks for the 1000 MB floor, the second for 2000
    "methods": {"fake": {"settings": [{"mode": "memory"}, {"mode": "allocate", "mb": 1200}]}},
    "metrics": {"n_neighbors": 50},
}
JOB_RE = re.compile(r"^(?:local)?rule integrate:\n((?:[ \t]+\w+: .*\n)+)", re.MULTILINE)


def integrate_jobs(log: str) -> list[dict[str, str]]:
    """Output and resources of every integrate job Snakemake started, in order."""
    jobs = []
    for block in JOB_RE.findall(log):
        fields = dict(line.strip().split(": ", 1) for line in block.splitlines())
        res = dict(kv.split("=", 1) for kv in fields["resources"].split(", "))
        jobs.append({"output": fields["output"], **res})
    return jobs


def fake_method_env(folder: Path) -> dict[str, str]:
    """study_env() whose Python processes all know method ``fake`` (a sitecustomize.py in ``folder``)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "sitecustomize.py").write_text(SITECUSTOMIZE.format(tests=str(REPO / "tests")))
    env = study_env()
    env["PYTHONPATH"] = os.pathsep.join([str(folder), env["PYTHONPATH"]])
    return env


def test_out_of_memory_is_retried_with_more_memory_then_recorded(tmp_path):
    (tmp_path / "config.yaml").write_text(yaml.safe_dump({**STUDY, "out": str(tmp_path / "out")}))
    out = tmp_path / "out" / "runs/sim_retry/fake"
    oom, fits = out / "mode-memory/seed0/run.h5ad", out / "mb-1200__mode-allocate/seed0/run.h5ad"
    res = subprocess.run(snakemake_cmd(tmp_path, "--retries", "2", str(oom), str(fits)), cwd=tmp_path,
                         env=fake_method_env(tmp_path / "site"), capture_output=True, text=True, timeout=900)
    log = res.stdout + res.stderr
    assert res.returncode == 0, log_tail(res, 6000)

    jobs = integrate_jobs(log)
    oom_jobs = [(j["attempt"], j["attempts"], j["mem_mb"]) for j in jobs if j["output"] == str(oom)]
    assert oom_jobs == [("1", "3", "1000"), ("2", "3", "2000"), ("3", "3", "3000")], jobs
    fits_jobs = [(j["attempt"], j["mem_mb"]) for j in jobs if j["output"] == str(fits)]
    assert fits_jobs == [("1", "1000"), ("2", "2000")], jobs

    rec = run_record(oom)
    assert rec["status"] == "failed" and rec["attempt"] == 3
    assert rec["error"].startswith("out of memory") and rec["error"].endswith("(on the last of 3 attempts)")
    assert run_record(fits)["status"] == "ok" and run_record(fits)["attempt"] == 2

    # the console ends with the failed runs and where to read why
    tail = log[log.rindex("Study finished"):]
    assert tail.startswith("Study finished: 2 integration runs recorded, 1 failed.")
    assert "failed: sim_retry fake mode-memory seed0: out of memory" in tail
    assert "tables/runs.tsv" in tail
