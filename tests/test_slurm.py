"""The study on a real single-node SLURM cluster (tests/slurm_cluster.py), through the slurm profile.

One short study goes simulate -> preprocess -> integrate -> metrics -> aggregate as SLURM jobs,
and checks the sbatch command of each job (``--verbose`` logs it): the partition is the
cluster's default (the profile sets none); CPU jobs ask for no GPU; the GPU method's job asks
for ``--gpus=a100:1`` (config gpu_model) and runs, on the CPU, on the node's fake GPU; a run
out of memory is resubmitted with twice, then three times the memory and recorded as failed
after the last attempt; the bookkeeping rules run locally.

The profile is passed as ``--workflow-profile``: with ``--profile`` the repo's default workflow
profile (workflow/profiles/default, loaded automatically) would override the SLURM defaults
(retries, latency-wait), since Snakemake gives workflow profiles precedence.
"""

from __future__ import annotations

import re
import subprocess

import pandas as pd
import pytest
import yaml
from slurm_cluster import GPU_MODEL, PARTITION, LocalSlurm
from test_e2e import CONFIGS, REPO, log_tail, run_record, snakemake_cmd, write_study_config
from test_retries import fake_method_env

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
    return subprocess.run(cmd, cwd=workdir, env=fake_method_env(workdir / "site"), capture_output=True, text=True,
                          timeout=timeout)


def sbatch_calls(log: str) -> dict[str, list[str]]:
    """rule -> its sbatch commands, in submission order (the plugin's comment names the rule)."""
    calls: dict[str, list[str]] = {}
    for call in SBATCH_RE.findall(log):
        rule = re.search(r"--comment '?rule_(\w+?)_wildcards|--comment '?rule_(\w+)'?", call)
        calls.setdefault(rule.group(1) or rule.group(2), []).append(call)
    return calls


def test_study_runs_as_slurm_jobs_with_gpu_requests_and_memory_retries(slurm, tmp_path):
    write_study_config(CONFIGS / "slurm.yaml", tmp_path)
    out = tmp_path / "out"
    res = run_on_slurm(tmp_path, str(out / "tables/best.tsv"))
    log = res.stdout + res.stderr
    assert res.returncode == 0, log_tail(res, 8000)

    runs = pd.read_csv(out / "tables/runs.tsv", sep="\t").set_index("method")
    assert (runs.drop(index="fake")["status"] == "ok").all(), runs
    assert runs.loc["fake", "status"] == "failed"
    assert re.match(r"out of memory.*\(on the last of 3 attempts\)$", runs.loc["fake", "error"])
    assert set(pd.read_csv(out / "tables/best.tsv", sep="\t")["method"]) == {"unintegrated", "harmony", "scdreamer",
                                                                             "fake"}

    calls = sbatch_calls(log)
    every = [c for rule_calls in calls.values() for c in rule_calls]
    submitted = re.findall(r"has been submitted with SLURM jobid (\d+)", log)
    assert len(set(submitted)) == len(every)  # each sbatch call gave a SLURM job
    # the profile sets no partition: the plugin takes the cluster's default
    profile = yaml.safe_load((REPO / "workflow/profiles/slurm/config.yaml").read_text())
    assert not any(r.startswith("slurm_partition") for r in profile["default-resources"])
    assert all(f"-p {PARTITION}" in c and re.search(r"--mem \d+ ", c) and re.search(r"-t \d+ ", c)
               for c in every), every
    # bookkeeping runs in the Snakemake process, everything else is a job
    assert {"simulate", "preprocess", "integrate"} <= set(calls) and any(r.startswith("metrics") for r in calls)
    assert not set(calls) & {"aggregate", "config_used", "report", "scaling_table"}, sorted(calls)

    integrate = {re.search(r"method=(\w+)", c).group(1): [] for c in calls["integrate"]}
    for c in calls["integrate"]:
        integrate[re.search(r"method=(\w+)", c).group(1)].append(c)
    # GPU model on the GPU job only (not --gpus=a100:0 on CPU jobs); threads -> --cpus-per-task
    assert [f"--gpus={GPU_MODEL}:1" in c for c in integrate["scdreamer"]] == [True]
    assert not any("--gpus" in c for m, cs in integrate.items() if m != "scdreamer" for c in cs)
    assert not any("--gpus" in c for r, cs in calls.items() if r != "integrate" for c in cs)
    assert all("--cpus-per-task=1" in c for cs in integrate.values() for c in cs)
    assert run_record(out / "runs/sim_slurm/scdreamer/default/seed0/run.h5ad")["device"] == "cpu"

    # out of memory: resubmitted with 2x, then 3x the first request (and twice the runtime, three times)
    mems = [int(re.search(r"--mem (\d+)", c).group(1)) for c in integrate["fake"]]
    times = [int(re.search(r"-t (\d+)", c).group(1)) for c in integrate["fake"]]
    assert mems == [mems[0], 2 * mems[0], 3 * mems[0]] and times == [times[0], 2 * times[0], 3 * times[0]]
    assert len(integrate["unintegrated"]) == len(integrate["harmony"]) == 1

    # the console ends with the failed run and where to read why
    assert "Study finished: 4 integration runs recorded, 1 failed." in log
    assert "failed: sim_slurm fake default seed0: out of memory" in log
    assert yaml.safe_load((CONFIGS / "slurm.yaml").read_text())["gpu_model"] == GPU_MODEL
