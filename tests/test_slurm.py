"""The study on a real single-node SLURM cluster (tests/slurm_cluster.py), through the slurm profile.

One short study goes simulate -> preprocess -> integrate -> metrics -> aggregate as SLURM jobs.
GPUs cannot run here (the test node has no GRES), so the GPU mapping is checked on the sbatch
command the plugin builds for a GPU method's job (``--verbose`` logs it); SLURM rejects that
submission, which also exercises the retry path: the profile's retries resubmit it with memory
and runtime that grow with the attempt.

The profile is passed as ``--workflow-profile``: with ``--profile`` the repo's default workflow
profile (workflow/profiles/default, loaded automatically) would override the SLURM defaults
(partition, retries, latency-wait), since Snakemake gives workflow profiles precedence.
"""

from __future__ import annotations

import re
import subprocess

import pandas as pd
import pytest
from slurm_cluster import PARTITION, LocalSlurm
from test_e2e import CONFIGS, REPO, log_tail, snakemake_cmd, study_env, write_study_config

pytestmark = [pytest.mark.slurm, pytest.mark.slow]

SLURM_ARGS = ["--workflow-profile", str(REPO / "workflow/profiles/slurm"), "--slurm-status-command", "squeue",
              "--slurm-no-account", "--slurm-init-seconds-before-status-checks", "1", "--verbose"]
SBATCH_RE = re.compile(r"sbatch call: (sbatch .*)")


@pytest.fixture(scope="module")
def slurm():
    cluster = LocalSlurm()
    reason = cluster.start()
    if reason:
        pytest.skip(f"no local SLURM cluster: {reason}")
    yield cluster
    cluster.stop()


def run_on_slurm(workdir, *extra, timeout=900) -> subprocess.CompletedProcess:
    cmd = snakemake_cmd(workdir, *SLURM_ARGS, "--slurm-logdir", str(workdir / "slurm_logs"), *extra)
    cmd[cmd.index("--cores"):cmd.index("--cores") + 2] = ["--jobs", "4"]
    return subprocess.run(cmd, cwd=workdir, env=study_env(), capture_output=True, text=True, timeout=timeout)


def test_study_runs_as_slurm_jobs_and_gpu_rules_request_gpus(slurm, tmp_path):
    write_study_config(CONFIGS / "slurm.yaml", tmp_path)
    out = tmp_path / "out"
    res = run_on_slurm(tmp_path, str(out / "tables/best.tsv"))
    assert res.returncode == 0, log_tail(res, 6000)
    runs = pd.read_csv(out / "tables/runs.tsv", sep="\t")
    assert len(runs) == 2 and (runs["status"] == "ok").all(), runs
    best = pd.read_csv(out / "tables/best.tsv", sep="\t")
    assert set(best["method"]) == {"unintegrated", "harmony"}
    # every job went through sbatch with the profile's partition, memory and runtime; CPU jobs ask no GPU
    calls = SBATCH_RE.findall(res.stdout + res.stderr)
    assert len(calls) >= 6, calls  # simulate, preprocess, 2 integrate, metrics (one per dataset), aggregate
    assert all(f"-p {PARTITION}" in c and re.search(r"--mem \d+ ", c) and re.search(r"-t \d+ ", c)
               for c in calls), calls
    integrate = [c for c in calls if "--comment rule_integrate_" in c]
    assert len(integrate) >= 2 and all("--cpus-per-task=1" in c for c in integrate), integrate  # threads: 1
    assert not any("--gpus" in c for c in calls)
    submitted = re.findall(r"has been submitted with SLURM jobid (\d+)", res.stdout + res.stderr)
    assert len(set(submitted)) == len(calls)  # each sbatch call gave a SLURM job

    # a GPU method's job: resources gpu=1 -> --gpus=1; the node has no GPU, so SLURM rejects it,
    # and each retry asks for more memory and time (mem_mb = 4000 * attempt, runtime = 120 * attempt)
    write_study_config(CONFIGS / "slurm.yaml", tmp_path,
                       methods={"unintegrated": {"params": {"n_comps": 10}}, "harmony": {"params": {"theta": 2.0}},
                                "scdreamer": {"params": {"epochs": 1}}})
    gpu_run = out / "runs/sim_slurm/scdreamer/default/seed0/run.h5ad"
    gpu = run_on_slurm(tmp_path, str(gpu_run), timeout=300)
    assert gpu.returncode != 0 and not gpu_run.exists()
    calls = SBATCH_RE.findall(gpu.stdout + gpu.stderr)
    assert calls and all("--gpus=1" in c for c in calls), log_tail(gpu, 6000)
    mems = [int(m) for c in calls for m in re.findall(r"--mem (\d+)", c)]
    times = [int(t) for c in calls for t in re.findall(r"-t (\d+)", c)]
    assert mems[:3] == [4000, 8000, 12000] and times[:3] == [120, 240, 360], calls
