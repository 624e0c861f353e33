"""Start and stop a real single-node SLURM cluster (Debian's slurm-wlm + munge) for tests.

Follows the recipe in specs/slurm-local.md: munge with a random key run as user ``munge``,
a minimal ``slurm.conf`` (one node = this machine, one default partition ``main``, no
accounting), then ``slurmctld`` and ``slurmd``. Daemons are stopped by the PIDs in their
pid files, and only the daemons this module started (a cluster that already answers
``sinfo`` is reused and left running).

The node declares one GPU of model ``a100`` that it does not have (gres.conf ``File=/dev/null``):
SLURM then accepts and schedules ``--gpus=a100:1`` jobs, which run on the CPU, so the GPU path
of the workflow (its sbatch and srun requests) runs end to end here.

``LocalSlurm.start()`` returns a skip reason (str) instead of raising when the cluster cannot
be had here (not root, no apt-get, install failed, daemons did not come up), so the test can
``pytest.skip`` with that reason.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

SLURM_CONF = Path("/etc/slurm/slurm.conf")
GRES_CONF = Path("/etc/slurm/gres.conf")
MUNGE_KEY = Path("/etc/munge/munge.key")
MUNGE_DIRS = [Path("/etc/munge"), Path("/var/log/munge"), Path("/run/munge"), Path("/var/lib/munge")]
MUNGE_PID = Path("/run/munge/munged.pid")
SLURMCTLD_PID = Path("/run/slurmctld.pid")
SLURMD_PID = Path("/run/slurmd.pid")
SPOOL_DIRS = [Path("/var/spool/slurmctld"), Path("/var/spool/slurmd"), Path("/var/log/slurm")]
MARKER = "# written by tests/slurm_cluster.py"
PARTITION = "main"
GPU_MODEL = "a100"


def slurm_conf_text(host: str, cpus: int, real_memory_mb: int) -> str:
    """slurm.conf of a one-node cluster (settings verified in specs/slurm-local.md)."""
    return "\n".join([
        MARKER,
        "ClusterName=local",
        f"SlurmctldHost={host}",
        "AuthType=auth/munge",
        "ProctrackType=proctrack/linuxproc",
        "TaskPlugin=task/none",
        "SelectType=select/cons_tres",
        "SelectTypeParameters=CR_Core_Memory",
        "SlurmUser=root",
        "ReturnToService=2",
        "AccountingStorageType=accounting_storage/none",
        "JobAcctGatherType=jobacct_gather/linux",
        f"SlurmctldPidFile={SLURMCTLD_PID}",
        f"SlurmdPidFile={SLURMD_PID}",
        "StateSaveLocation=/var/spool/slurmctld",
        "SlurmdSpoolDir=/var/spool/slurmd",
        "SlurmctldLogFile=/var/log/slurm/slurmctld.log",
        "SlurmdLogFile=/var/log/slurm/slurmd.log",
        "MpiDefault=none",
        "SchedulerType=sched/backfill",
        # Short timers: the test cluster must come up and hand out jobs within seconds.
        "SlurmdTimeout=60",
        "InactiveLimit=0",
        "MinJobAge=300",
        "GresTypes=gpu",
        f"NodeName={host} Gres=gpu:{GPU_MODEL}:1 CPUs={cpus} RealMemory={real_memory_mb} State=UNKNOWN",
        f"PartitionName={PARTITION} Nodes={host} Default=YES MaxTime=INFINITE State=UP",
        "",
    ])


def gres_conf_text(host: str) -> str:
    """The node's one GPU, backed by /dev/null: schedulable, not usable (jobs run on the CPU)."""
    return f"{MARKER}\nNodeName={host} Name=gpu Type={GPU_MODEL} File=/dev/null\n"


def total_memory_mb() -> int:
    """Physical memory of this machine in MB (from /proc/meminfo)."""
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) // 1024
    raise RuntimeError("/proc/meminfo has no MemTotal line")


def _read_pid(path: Path) -> int | None:
    try:
        pid = int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    return pid


def _wait_for(predicate, timeout_s: float, interval_s: float = 0.5) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval_s)
    return predicate()


def _run(cmd: list[str], timeout: float = 30, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, **kw)


def node_states() -> list[str]:
    """States of the cluster's nodes as ``sinfo`` reports them ([] when slurmctld does not answer)."""
    if shutil.which("sinfo") is None:
        return []
    try:
        res = _run(["sinfo", "--noheader", "--Node", "-o", "%T"], timeout=10)
    except subprocess.TimeoutExpired:
        return []
    return res.stdout.split() if res.returncode == 0 else []


def node_gres() -> str:
    """Generic resources of the cluster's nodes (``sinfo %G``), "" when it does not answer."""
    try:
        res = _run(["sinfo", "--noheader", "--Node", "-o", "%G"], timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return res.stdout if res.returncode == 0 else ""


def cluster_ready() -> bool:
    """True when a node is idle/mixed/allocated (can take jobs)."""
    return any(s.rstrip("*~#") in ("idle", "mixed", "allocated", "completing") for s in node_states())


class LocalSlurm:
    """A single-node SLURM cluster on this machine; ``start()`` then ``stop()``."""

    def __init__(self) -> None:
        self.host = socket.gethostname().split(".")[0]
        self.started: list[Path] = []  # pid files of daemons this instance started
        self.log: list[str] = []

    # --- installation -------------------------------------------------------------------
    def install(self) -> str | None:
        """Install slurm-wlm and munge with apt when missing. Returns a skip reason or None."""
        if all(shutil.which(b) for b in ("slurmctld", "slurmd", "munged", "sbatch", "squeue")):
            return None
        if os.geteuid() != 0:
            return "slurm-wlm is not installed and installing it needs root"
        if shutil.which("apt-get") is None:
            return "slurm-wlm is not installed and there is no apt-get to install it"
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        res = _run(["apt-get", "install", "-y", "--no-install-recommends", "slurm-wlm", "munge"],
                   timeout=600, env=env)
        if res.returncode != 0:
            return f"apt-get install slurm-wlm munge failed: {res.stderr.strip()[-300:]}"
        return None

    # --- munge --------------------------------------------------------------------------
    def _start_munge(self) -> str | None:
        try:
            munge_user = pwd.getpwnam("munge")
        except KeyError:
            return "user 'munge' does not exist (munge package incomplete)"
        for d in MUNGE_DIRS:
            d.mkdir(parents=True, exist_ok=True)
            os.chown(d, munge_user.pw_uid, munge_user.pw_gid)
        if not MUNGE_KEY.exists() or MUNGE_KEY.stat().st_size < 32:
            tmp = MUNGE_KEY.with_name(".munge.key.tmp")
            tmp.write_bytes(os.urandom(1024))
            os.chown(tmp, munge_user.pw_uid, munge_user.pw_gid)
            tmp.chmod(0o400)
            os.replace(tmp, MUNGE_KEY)
        if _read_pid(MUNGE_PID) is None:
            res = _run(["runuser", "-u", "munge", "--", "munged"])
            if res.returncode != 0:
                return f"munged did not start: {res.stderr.strip()[-300:]}"
            if not _wait_for(lambda: _read_pid(MUNGE_PID) is not None, 10):
                return "munged started but wrote no pid file"
            self.started.append(MUNGE_PID)
        check = subprocess.run("munge -n | unmunge", shell=True, capture_output=True, text=True, timeout=10)
        if "Success" not in check.stdout:
            return f"munge -n | unmunge failed: {check.stdout.strip()[-200:]} {check.stderr.strip()[-200:]}"
        return None

    # --- slurm --------------------------------------------------------------------------
    def _write_conf(self) -> str | None:
        for path in (SLURM_CONF, GRES_CONF):
            if path.exists() and MARKER not in path.read_text():
                return f"{path} exists and was not written by this fixture; not overwriting it"
        SLURM_CONF.parent.mkdir(parents=True, exist_ok=True)
        text = slurm_conf_text(self.host, os.cpu_count() or 1, int(total_memory_mb() * 0.9))
        for path, content in ((GRES_CONF, gres_conf_text(self.host)), (SLURM_CONF, text)):
            tmp = path.with_name(f".{path.name}.tmp")
            tmp.write_text(content)
            os.replace(tmp, path)
        for d in SPOOL_DIRS:
            d.mkdir(parents=True, exist_ok=True)
        return None

    def _start_daemon(self, binary: str, pid_file: Path) -> str | None:
        if _read_pid(pid_file) is not None:
            return None
        res = _run([binary])
        if res.returncode != 0:
            return f"{binary} did not start: {res.stderr.strip()[-300:]}"
        if not _wait_for(lambda: _read_pid(pid_file) is not None, 15):
            return f"{binary} started but {pid_file} did not appear"
        self.started.append(pid_file)
        return None

    def start(self) -> str | None:
        """Bring the cluster up. Returns None when ready, else the reason it is not."""
        if cluster_ready():
            if f"gpu:{GPU_MODEL}" not in node_gres():
                return (f"a running cluster without the test node's GPU (gres gpu:{GPU_MODEL}) answers sinfo; "
                        "stop it so that the fixture can start its own")
            self.log.append("reusing a running cluster")
            return None
        reason = self.install() or self._start_munge() or self._write_conf()
        if reason:
            return reason
        reason = self._start_daemon("slurmctld", SLURMCTLD_PID) or self._start_daemon("slurmd", SLURMD_PID)
        if reason:
            self.stop()
            return reason
        if not _wait_for(lambda: bool(node_states()), 30):
            self.stop()
            return "slurmctld does not answer sinfo"
        if not cluster_ready():  # a node left down/drained by an earlier run: resume it
            _run(["scontrol", "update", f"nodename={self.host}", "state=resume"])
        if not _wait_for(cluster_ready, 30):
            states = node_states()
            self.stop()
            return f"the node did not become idle (sinfo states: {states})"
        return None

    def stop(self) -> None:
        """SIGTERM the daemons this instance started (by their pid files), newest first."""
        for pid_file in reversed(self.started):
            pid = _read_pid(pid_file)
            if pid is None:
                continue
            os.kill(pid, signal.SIGTERM)
            if not _wait_for(lambda p=pid: not _alive(p), 15):
                os.kill(pid, signal.SIGKILL)
        self.started.clear()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie child of ours counts as gone
    try:
        return "Z" not in Path(f"/proc/{pid}/stat").read_text().split()[2]
    except OSError:
        return False
