"""The last lines of a study's console output: how many runs failed, and where to read why.

A failed run is recorded, not fatal (runner.py), so Snakemake itself ends at "100% done"
even when half the runs failed. The workflow's onsuccess/onerror handlers print these lines.
They read ``tables/runs.tsv`` when it is newer than every run file, else the run records
themselves (HDF5 attributes only, no matrices).
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

from methods.base import DATASET_FAILED

MAX_LISTED = 10


def _records_from_table(path: Path) -> list[dict]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh, delimiter="\t"))


def _records_from_files(files: list[Path]) -> list[dict]:
    import h5py

    records = []
    for path in files:
        try:
            with h5py.File(path, "r") as f:
                raw = f["uns"]["run_json"][()]
            rec = json.loads(raw.decode() if isinstance(raw, bytes) else raw)
        except (OSError, KeyError, ValueError) as exc:
            rec = {"status": "unreadable", "error": f"{path}: {exc}"}
        rec["run_path"] = str(path)
        records.append(rec)
    return records


def _run_name(rec: dict) -> str:
    parts = Path(rec.get("run_path", "")).parts
    dataset = rec.get("dataset") or (parts[-5] if len(parts) >= 5 else "?")
    return f"{dataset} {rec.get('method', '?')} {rec.get('setting', '?')} seed{rec.get('seed', '?')}"


def study_records(out: Path) -> list[dict]:
    """One record per integration run (status, error, ...) of the study in ``out``."""
    files = sorted(out.glob("runs/*/*/*/seed*/run.h5ad"))
    table = out / "tables" / "runs.tsv"
    newest_run = max((f.stat().st_mtime for f in files), default=0.0)
    if table.is_file() and table.stat().st_mtime >= newest_run:
        return _records_from_table(table)
    return _records_from_files(files)


def _failed_datasets(failed: list[dict]) -> list[str]:
    """One line per failed dataset (bad data recorded by the data stage) instead of one per run."""
    errors: dict[str, str] = {}
    counts: dict[str, int] = {}
    for rec in failed:
        error = " ".join(str(rec.get("error") or "").split())
        if error.startswith(DATASET_FAILED):
            dataset = _run_name(rec).split(" ", 1)[0]
            errors.setdefault(dataset, error.removeprefix(DATASET_FAILED).strip())
            counts[dataset] = counts.get(dataset, 0) + 1
    return [f"  failed dataset: {d} ({counts[d]} runs): {errors[d][:300]}" for d in errors]


def summary_lines(out: str | Path, finished: bool) -> list[str]:
    """Lines for the end of a Snakemake invocation (``finished``: it ended without a failed job)."""
    out = Path(out)
    try:
        records = study_records(out)
        scaling = _records_from_files(sorted(out.glob("scaling/*/*/n*/run.h5ad")))
    except ImportError:  # h5py missing in the Snakemake environment and no up-to-date table
        return [f"Run statuses: see {out / 'tables' / 'runs.tsv'} once the aggregate step has run."]
    failed = [r for r in records if r.get("status") != "ok"]
    head = "Study finished" if finished else "Snakemake stopped with failed jobs (their errors are above)"
    lines = [f"{head}: {len(records)} integration runs recorded, {len(failed)} failed."]
    lines += _failed_datasets(failed)
    failed = [r for r in failed if not str(r.get("error") or "").startswith(DATASET_FAILED)]
    for rec in failed[:MAX_LISTED]:
        error = " ".join(str(rec.get("error") or "").split())
        lines.append(f"  failed: {_run_name(rec)}: {error[:200]}")
    if len(failed) > MAX_LISTED:
        lines.append(f"  ... and {len(failed) - MAX_LISTED} more")
    if failed:
        lines.append(f"Why each run failed: column 'error' of {out / 'tables' / 'runs.tsv'}, the 'Failed runs' "
                     f"section of {out / 'report.html'}, and the run's log under {out / 'logs' / 'integrate'}/.")
    if scaling:
        bad = [r for r in scaling if r.get("status") != "ok"]
        lines.append(f"Scaling study: {len(scaling)} runs, {len(bad)} failed"
                     + (f" (see {out / 'tables' / 'scaling.tsv'}, column error)." if bad else "."))
    return lines
