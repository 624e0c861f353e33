"""Plan-time check of a study's data files: a damaged one is named before any job runs.

Snakemake decides what to redo from file dates, not contents. A preprocessed dataset that was
damaged after its runs finished (a truncated copy, a full disk) looks newer than its runs, so
Snakemake would redo them, delete the good run files first, and the runs would then fail on the
damaged file. ``damaged_data_files`` lists such files (an HDF5 header that does not open) so that
the workflow stops with one line per file saying what to do, and nothing is deleted.
"""

from __future__ import annotations

from pathlib import Path


def h5ad_problem(path: Path) -> str | None:
    """Why an existing h5ad cannot be opened (truncated, not HDF5), or None when it opens."""
    import h5py

    try:
        with h5py.File(path, "r") as f:
            f["obs"]  # noqa: B018 - the group every h5ad has; a header without it is damaged too
    except (OSError, KeyError) as exc:
        return " ".join(str(exc).split())
    return None


def damaged_data_files(out: str | Path, datasets: dict) -> list[str]:
    """One line per damaged data file of the study in ``out`` (preprocessed and raw), naming it,
    why, and what to do."""
    out = Path(out)
    lines = []
    for name in datasets:
        data = out / "data" / f"{name}.h5ad"
        if data.is_file() and (problem := h5ad_problem(data)):
            lines.append(f"{data} is damaged ({problem}): delete it and run again; it is remade from its "
                         f"source and the runs of dataset '{name}' are redone (the other datasets' runs are kept)")
        for raw in (out / "data" / "raw" / kind / f"{name}.h5ad" for kind in ("simulated", "downloaded")):
            if raw.is_file() and (problem := h5ad_problem(raw)):
                lines.append(f"{raw} is damaged ({problem}): delete it and run again; it is remade when needed")
    return lines
