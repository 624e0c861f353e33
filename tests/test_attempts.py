"""Retries: out of memory or time before the last attempt exits non-zero (Snakemake retries the
job with more), the last attempt records the run as failed with the reason; other failures are
recorded at once (methods/attempts.py, methods/runner.py)."""

from __future__ import annotations

import os

import pytest

from methods import __main__ as cli
from methods import registry
from methods.attempts import RETRY_EXIT_CODE, RetryRun, parse_slurm_duration
from methods.registry import MethodSpec
from methods.runner import read_run_info, run


@pytest.fixture
def fake_registry(monkeypatch):
    monkeypatch.setitem(registry.METHODS, "fake", MethodSpec(
        "fake_methods", "embedding", "lognorm", "harmony", defaults={"mode": "ok", "mb": 0, "seconds": 0}))


def _run(data, tmp_path, params, **kw):
    out = tmp_path / "runs" / "run.h5ad"
    return out, run(str(data), str(out), "fake", "default", params, seed=0, **kw)


def _leftovers(out):
    return [p.name for p in out.parent.glob(".*")] if out.parent.exists() else []


def test_out_of_memory_before_the_last_attempt_asks_for_a_retry_and_writes_nothing(
        fake_registry, sim_small_path, tmp_path):
    with pytest.raises(RetryRun, match=r"out of memory.*\(attempt 1 of 3\)"):
        _run(sim_small_path, tmp_path, {"mode": "memory"}, max_mem_mb=1500, attempt=1, attempts=3)
    out = tmp_path / "runs" / "run.h5ad"
    assert not out.exists() and _leftovers(out) == []


def test_out_of_memory_on_the_last_attempt_is_recorded_with_the_reason(fake_registry, sim_small_path, tmp_path):
    out, info = _run(sim_small_path, tmp_path, {"mode": "memory"}, max_mem_mb=1500, attempt=3, attempts=3)
    rec = read_run_info(out)
    assert rec["status"] == "failed" and rec["attempt"] == 3 and rec["attempts"] == 3
    assert rec["error"].startswith("out of memory") and rec["error"].endswith("(on the last of 3 attempts)")


def _data_segment_mb() -> int:
    """This process's data segment: the forked method inherits it, and the limit covers it."""
    with open("/proc/self/status") as fh:
        return next(int(line.split()[1]) for line in fh if line.startswith("VmData:")) // 1024


def test_a_run_over_the_first_limit_succeeds_with_the_next_attempts_memory(fake_registry, sim_small_path, tmp_path):
    # The limit is on the whole process, so it starts from what this (test) process already holds:
    # a pytest worker that has imported JAX and torch holds about a GB.
    base = _data_segment_mb()
    params = {"mode": "allocate", "mb": 1200}  # more than attempt 1's extra 1000 MB, less than attempt 2's 2000
    with pytest.raises(RetryRun):
        _run(sim_small_path, tmp_path, params, max_mem_mb=base + 1000, attempt=1, attempts=2)
    out, info = _run(sim_small_path, tmp_path, params, max_mem_mb=base + 2000, attempt=2, attempts=2)
    assert info["status"] == "ok" and read_run_info(out)["attempt"] == 2


def test_time_limit_stops_the_method_then_retries_then_records(fake_registry, sim_small_path, tmp_path):
    params = {"mode": "sleep", "seconds": 60}
    with pytest.raises(RetryRun, match=r"time limit.*\(attempt 1 of 2\)"):
        _run(sim_small_path, tmp_path, params, time_limit_s=1, attempt=1, attempts=2)
    out, info = _run(sim_small_path, tmp_path, params, time_limit_s=1, attempt=2, attempts=2)
    assert info["wall_s"] < 30  # stopped, not waited for
    assert read_run_info(out)["error"] == ("time limit: the method was stopped after 1 s "
                                           "(on the last of 2 attempts)")
    assert _leftovers(out) == []


def test_a_killed_method_is_retried_as_out_of_memory(fake_registry, sim_small_path, tmp_path):
    with pytest.raises(RetryRun, match="SIGKILL"):  # the kernel's OOM killer sends SIGKILL
        _run(sim_small_path, tmp_path, {"mode": "kill"}, attempt=1, attempts=2)


def test_other_failures_are_recorded_at_once(fake_registry, sim_small_path, tmp_path):
    out, info = _run(sim_small_path, tmp_path, {"mode": "raise"}, attempt=1, attempts=3)
    assert info["status"] == "failed" and "deliberate failure" in info["error"]
    assert "attempt" not in info["error"]  # no retry could help: no attempt bookkeeping in the reason


def test_cli_exits_with_the_retry_status_and_says_why(fake_registry, sim_small_path, tmp_path, capsys):
    out = tmp_path / "run.h5ad"
    code = cli.main(["run", "--data", str(sim_small_path), "--out", str(out), "--method", "fake",
                     "--params", '{"mode": "memory"}', "--max-mem-mb", "1500", "--attempt", "2", "--attempts", "3"])
    assert code == RETRY_EXIT_CODE and not out.exists()
    assert "out of memory" in capsys.readouterr().err
    code = cli.main(["run", "--data", str(sim_small_path), "--out", str(out), "--method", "fake",
                     "--params", '{"mode": "memory"}', "--max-mem-mb", "1500", "--attempt", "3", "--attempts", "3"])
    assert code == 0 and read_run_info(out)["status"] == "failed"


@pytest.mark.parametrize("text,seconds", [
    ("59:30", 3570), ("1:02:03", 3723), ("2-00:00:10", 172810), ("0:05", 5),
    ("UNLIMITED", None), ("INVALID", None), ("", None),
])
def test_slurm_time_left_parses_squeue_durations(text, seconds):
    assert parse_slurm_duration(text) == seconds


def test_time_limit_comes_from_the_slurm_job_with_a_margin(monkeypatch, tmp_path):
    from methods.attempts import method_time_limit_s

    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    assert method_time_limit_s(None) is None  # not a SLURM job: no limit
    assert method_time_limit_s(5.0) == 5.0
    squeue = tmp_path / "squeue"
    squeue.write_text('#!/bin/sh\n[ "$3" = 4242 ] && echo "1:40:00"\n')  # --noheader --jobs 4242 ...
    squeue.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}:{os.environ['PATH']}")
    monkeypatch.setenv("SLURM_JOB_ID", "4242")
    assert method_time_limit_s(None) == 6000 - 300  # 5 % margin (at least 60 s) to record the run
