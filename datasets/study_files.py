"""Start-up checks of a study's files: a damaged data file or a folder that cannot be written is
named before any job runs, in one line that says what to do.

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


def unwritable_folders(out: str | Path) -> list[Path]:
    """Folders of the study in ``out`` that cannot be written (read-only mount, permissions,
    immutable): a job writing there would fail with an empty log, or Snakemake itself while it
    clears a job's old outputs."""
    import os

    out = Path(out)
    if not out.exists():
        return []
    folders = [out] + [Path(root) / d for root, dirs, _ in os.walk(out) for d in dirs]
    return [f for f in folders if not os.access(f, os.W_OK | os.X_OK)]


def unwritable_message(out: str | Path) -> str | None:
    """One line naming an unwritable folder of the study and what to do, or None."""
    folders = unwritable_folders(out)
    if not folders:
        return None
    more = f" (and {len(folders) - 1} more folders)" if len(folders) > 1 else ""
    return (f"{folders[0]} is not writable{more}: the study writes its results under {out}; make it writable "
            f"(chmod -R u+w {out}, or mount it read-write) and run again")
