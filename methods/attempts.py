"""Retries of a run: which failures deserve another attempt, and how long a job may still run.

Snakemake retries a failed job with the next attempt's resources (more memory and time,
workflow/rules/common.smk). The runner therefore exits non-zero when a run ran out of memory
or out of time on an attempt that is not the last, instead of recording it as failed; the
last attempt records it. Any other failure (an exception of the
method, a bad parameter) would fail the same way again and is recorded at once.

On SLURM the job's time limit is enforced by killing the job, which would leave no run file
at all. The runner stops the method shortly before that instead (``time_left_s``), so the
run is retried, or recorded as failed with the reason.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess

RETRY_EXIT_CODE = 75  # EX_TEMPFAIL: "try again", for the log reader
OOM_ERROR_PREFIX = "out of memory"
TIME_ERROR_PREFIX = "time limit"
# the smallest memory limit a run can start under: the runner's process with numpy, anndata and
# h5py (torch for the deep models) already holds several hundred MB before the method begins
MIN_MEM_LIMIT_MB = 1000
_SLURM_DURATION = re.compile(r"^(?:(\d+)-)?(?:(\d+):)?(\d+):(\d+)$")


class RetryRun(Exception):
    """A run failed for lack of memory or time on an attempt after which Snakemake retries."""


def is_resource_failure(error: str) -> bool:
    """True for the runner's out-of-memory and time-limit errors (a SIGKILL is most often the OOM
    killer: ``methods.base.killed_by_signal`` says so in its description)."""
    return error.startswith((OOM_ERROR_PREFIX, TIME_ERROR_PREFIX)) or "(SIGKILL" in error


def parse_slurm_duration(text: str) -> int | None:
    """Seconds of a SLURM duration ("MM:SS", "H:MM:SS", "D-HH:MM:SS"); None when unlimited or
    not a duration."""
    m = _SLURM_DURATION.match(text.strip())
    if not m:
        return None
    days, hours, minutes, seconds = (int(g) if g else 0 for g in m.groups())
    return ((days * 24 + hours) * 60 + minutes) * 60 + seconds


def slurm_time_left_s() -> int | None:
    """Seconds until SLURM ends the current job (``squeue %L``); None outside a SLURM job, without
    squeue, or for a job without a time limit."""
    job = os.environ.get("SLURM_JOB_ID")
    if not job or shutil.which("squeue") is None:
        return None
    try:
        res = subprocess.run(["squeue", "--noheader", "--jobs", job, "--format", "%L"],
                             capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return parse_slurm_duration(res.stdout) if res.returncode == 0 else None


def method_time_limit_s(explicit_s: float | None) -> float | None:
    """How long the method may run: ``explicit_s`` when given, else the SLURM job's remaining time
    minus a margin to record the run and let Snakemake check the outputs (5 %, at least 60 s)."""
    if explicit_s is not None:
        return explicit_s
    left = slurm_time_left_s()
    if left is None:
        return None
    return max(1.0, left - max(60.0, 0.05 * left))
