"""The lock file (config/datasets.lock): sha256 + size of each dataset source on first use.

A registry entry without a published sha256, and every local ``file:`` dataset, is recorded
here the first time it is used; later uses must match, so a changed download or a changed
local file is noticed. Records are per (dataset, source): a URL, or ``file://<absolute path>``
for a local file. Parallel Snakemake jobs share the file through an advisory lock beside it.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

import yaml

SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
HEADER = ("# sha256 + size of each dataset source on first use: downloads without a published checksum, "
          "local file: datasets (datasets/lock.py)\n")


class LockFileError(ValueError):
    """The lock file cannot be read or holds a malformed record (the message names it)."""


@contextlib.contextmanager
def _locked(lock_path: Path) -> Iterator[None]:
    """Hold an exclusive advisory lock beside the lock file (parallel Snakemake jobs share it)."""
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(f"{lock_path}.flock", "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def read_lock(lock_path: str | Path) -> dict[str, dict[str, dict]]:
    """The lock file as {dataset: {source: {sha256, size, recorded}}}; empty when absent."""
    lock_path = Path(lock_path)
    if not lock_path.exists():
        return {}
    try:
        document = yaml.safe_load(lock_path.read_text()) or {}
    except yaml.YAMLError as err:
        raise LockFileError(f"{lock_path}: the lock file is not valid YAML: {' '.join(str(err).split())}") from err
    if not isinstance(document, dict):
        raise LockFileError(f"{lock_path}: the lock file must map dataset -> source -> record")
    return document


def lock_record(lock_path: str | Path, name: str, source: str) -> dict | None:
    """The recorded {sha256, size, recorded} of (dataset, source), or None."""
    lock_path = Path(lock_path)
    if not lock_path.exists():
        return None
    with _locked(lock_path):
        records = read_lock(lock_path).get(name) or {}
    record = records.get(source) if isinstance(records, dict) else None
    if record is not None and not (isinstance(record, dict) and SHA256_RE.match(str(record.get("sha256")))):
        raise LockFileError(f"{lock_path}: record for dataset '{name}', source {source} has no valid sha256: "
                            f"{record!r}; delete that record to record the source again")
    return record


def record_in_lock(lock_path: str | Path, name: str, source: str, sha256: str, size: int) -> None:
    """Add the first use's sha256 + size of (dataset, source); written atomically."""
    lock_path = Path(lock_path)
    with _locked(lock_path):
        document = read_lock(lock_path)
        document.setdefault(name, {})[source] = {
            "sha256": sha256, "size": size, "recorded": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        }
        tmp = lock_path.with_name(f".{lock_path.name}.{os.getpid()}.tmp")
        tmp.write_text(HEADER + yaml.safe_dump(document, sort_keys=True))
        os.replace(tmp, lock_path)
