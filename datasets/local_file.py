"""``file:`` datasets: a user's own data file, named in the config and held to the registry's rules.

    datasets:
      mine:
        file: {path: data/mine.h5ad, batch_key: sample, label_key: cell_type,
               system_key: null, counts: layers/counts, counts_integer: true}

``file_entry`` turns the config section into a registry entry (source ``path`` instead of a URL;
format from the path unless given) and validates it with the registry schema. At plan time
``check_at_plan`` answers the mistakes a user makes first in one line, before any job runs: a
path that does not exist, a key the file does not have (h5ad: read from its header), a file
changed since its sha256 was recorded. The preprocess job reads the file itself (no copy:
``read_local``) after ``verify_or_record``: its sha256 is recorded in the lock file on first use
(datasets/lock.py, source ``file://<absolute path>``) and must match afterwards, or match the
config's ``sha256`` when one is given.
"""

from __future__ import annotations

import hashlib
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from datasets.download import PayloadContentError, read_payload, sha256_of
from datasets.lock import lock_record, record_in_lock
from datasets.registry import validate_entry

SUFFIX_FORMATS = ((".h5ad", "h5ad"), (".h5", "10x_h5"), (".tar.gz", "10x_mtx_tar_gz"), (".tgz", "10x_mtx_tar_gz"))
FORMATS = "h5ad, 10x_h5, 10x_mtx (a folder), 10x_mtx_tar_gz or zip:<member>.h5ad"
KEY_FIELDS = ("batch_key", "label_key", "system_key")
SHOWN_COLUMNS = 30


class LocalFileError(ValueError):
    """A ``file:`` dataset that cannot be used as configured (plan time; the message names the key)."""


def resolve_path(text: str, base_dir: Path) -> Path:
    """``text`` as an absolute path; a relative one is taken relative to ``base_dir``."""
    path = Path(text).expanduser()
    return (path if path.is_absolute() else base_dir / path).resolve()


def infer_format(path: Path) -> str | None:
    """The format a path's name (or being a folder) implies; None when it implies none."""
    if path.is_dir():
        return "10x_mtx"
    return next((fmt for suffix, fmt in SUFFIX_FORMATS if path.name.endswith(suffix)), None)


def file_entry(name: str, section: dict[str, Any], base_dir: Path, origin: str) -> dict:
    """The registry entry of ``datasets.<name>.file``; ``origin`` says where relative paths start
    (for messages). Raises ``LocalFileError`` for a missing path or an unknown format."""
    where = f"datasets.{name}.file"
    try:
        path = resolve_path(section["path"], base_dir)
    except (RuntimeError, OSError) as exc:  # Python raises RuntimeError for a symbolic link loop
        raise LocalFileError(f"{where}.path: {section['path']} cannot be followed ({exc}): point the link to the "
                             "real file") from None
    if not path.exists():
        raise LocalFileError(f"{where}.path: {path} does not exist (a relative path is relative to {origin})")
    if section.get("label_key") is not None and section.get("label_key") == section.get("batch_key"):
        raise LocalFileError(f"{where}.label_key: '{section['label_key']}' is the batch_key too; the cell-type "
                             "labels must be another obs column (or leave label_key out for unlabelled data)")
    fmt = section.get("format") or infer_format(path)
    if fmt is None:
        raise LocalFileError(f"{where}.path: cannot tell the format of {path} from its name; "
                             f"set {where}.format: one of {FORMATS}")
    actual = hdf5_kind(path)
    if fmt in ("h5ad", "10x_h5") and actual not in (None, fmt):
        raise LocalFileError(f"{where}.path: {path} is read as {fmt}, but it holds {actual} (its HDF5 groups say so): "
                             f"give it the ending {'.h5ad' if actual == 'h5ad' else '.h5'} or set {where}.format: "
                             f"{actual}")
    if (fmt == "10x_mtx") != path.is_dir():
        kind = "a folder" if path.is_dir() else "a file"
        raise LocalFileError(f"{where}.format: '{fmt}' does not fit {path}, which is {kind} "
                             "(10x_mtx is a folder with matrix.mtx[.gz]; the other formats are files)")
    entry = {
        "url": None, "mirrors": [], "sha256": section.get("sha256"), "size": None, "format": fmt,
        "batch_key": section["batch_key"], "label_key": section.get("label_key"),
        "system_key": section.get("system_key"), "counts": section.get("counts", "X"),
        "counts_integer": section.get("counts_integer", True), "expected_cells": None, "papers": [],
        "notes": "", "path": str(path), "genome": section.get("genome"),
    }
    return validate_entry(name, entry, where=f"config {where}")


def hdf5_kind(path: Path) -> str | None:
    """``h5ad`` (top-level obs and var) or ``10x_h5`` (a matrix group) for an HDF5 file, else None
    (not HDF5, or neither): a file's name may say otherwise (an h5ad saved as .h5)."""
    if not path.is_file():
        return None
    try:
        import h5py

        with h5py.File(path, "r") as f:
            if "matrix" in f:
                return "10x_h5"
            return "h5ad" if "obs" in f and "var" in f else None
    except (ImportError, OSError):
        return None


def source_id(entry: dict) -> str:
    """The lock-file key of a local file: its ``file://`` URI."""
    return Path(entry["path"]).as_uri()


def content_files(path: str | Path) -> list[Path]:
    """The files that make up a source: the file itself, or every file under a folder (sorted)."""
    path = Path(path)
    if path.is_dir():
        return sorted(p for p in path.rglob("*") if p.is_file())
    return [path]


def checksum(path: str | Path) -> tuple[str, int]:
    """(sha256, bytes) of a file; of a folder, the sha256 of its files' relative names and sha256s."""
    path = Path(path)
    if not path.is_dir():
        return sha256_of(path), path.stat().st_size
    digest, size = hashlib.sha256(), 0
    for member in content_files(path):
        digest.update(f"{member.relative_to(path).as_posix()}\0{sha256_of(member)}\n".encode())
        size += member.stat().st_size
    return digest.hexdigest(), size


def _columns(group) -> list[str]:
    order = group.attrs.get("column-order")
    return [str(c) for c in order] if order is not None else \
        [k for k in group if k not in (group.attrs.get("_index", "_index"), "__categories")]


def h5ad_keys(path: Path) -> tuple[list[str], list[str], list[str]]:
    """(obs columns, var columns, layers) of an h5ad from its header; OSError/KeyError when it is not one."""
    import h5py

    with h5py.File(path, "r") as f:
        layers = list(f["layers"]) if "layers" in f else []
        return _columns(f["obs"]), _columns(f["var"]) if "var" in f else [], layers


def _shown(values: list[str]) -> str:
    more = f" ... (+{len(values) - SHOWN_COLUMNS} more)" if len(values) > SHOWN_COLUMNS else ""
    return ", ".join(values[:SHOWN_COLUMNS]) + more or "(none)"


def _check_keys(name: str, entry: dict) -> None:
    """The keys of an h5ad's entry name columns and a layer the file has."""
    where, path = f"datasets.{name}.file", Path(entry["path"])
    try:
        columns, var_columns, layers = h5ad_keys(path)
    except (OSError, KeyError) as err:
        raise LocalFileError(f"{where}.path: {path} cannot be read as h5ad ({err}); is it complete?") from None
    for field in KEY_FIELDS:
        key = entry[field]
        if key is not None and key not in columns and key in var_columns:
            raise LocalFileError(f"{where}.{field}: '{key}' is a var column of {path}, not an obs column: the "
                                 "matrix looks transposed (genes x cells); write it cells x genes (adata.T)")
        if key is not None and key not in columns:
            raise LocalFileError(f"{where}.{field}: '{key}' is not an obs column of {path}; "
                                 f"obs columns: {_shown(columns)}")
    counts = entry["counts"] or "X"
    if counts.startswith("layers/") and counts.split("/", 1)[1] not in layers:
        raise LocalFileError(f"{where}.counts: {path} has no layer '{counts.split('/', 1)[1]}'; "
                             f"layers: {_shown(layers)} (or counts: X)")


def _changed_message(path: Path, sha: str, size: int, expected: str, source: str) -> str:
    return (f"{path} changed since its sha256 was {source} (now {size} bytes, sha256 {sha[:12]}..., "
            f"expected {expected[:12]}...)")


def _modified_after(path: Path, recorded: str | None) -> bool:
    """Whether any file of ``path`` was modified after the lock record's time (or it has none)."""
    try:
        when = datetime.strptime(str(recorded), "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc).timestamp()
    except ValueError:
        return True
    return any(p.stat().st_mtime > when for p in content_files(path))


def check_at_plan(name: str, entry: dict, lock_path: str | Path) -> None:
    """What can be checked before any job: keys (h5ad) and the lock record. ``LocalFileError``."""
    path = Path(entry["path"])
    if entry["format"] == "h5ad":
        _check_keys(name, entry)
    record = lock_record(lock_path, name, source_id(entry))
    if record is None or entry["sha256"] is not None:
        return  # first use, or a published sha256 that the preprocess job verifies
    size = sum(p.stat().st_size for p in content_files(path))
    if size == record.get("size") and not _modified_after(path, record.get("recorded")):
        return  # unchanged as far as size and dates tell; hashing it would take long for atlases
    sha, size = checksum(path)
    if sha != record["sha256"]:
        raise LocalFileError(
            f"datasets.{name}.file.path: "
            + _changed_message(path, sha, size, record["sha256"], f"recorded in {lock_path} on {record.get('recorded')}")
            + f"; if you changed it on purpose, delete the '{name}' record from {lock_path} (the dataset "
              "and its runs are then redone), else restore the file")


def verify_or_record(name: str, entry: dict, lock_path: str | Path) -> str:
    """Check the file against the config's sha256 or its lock record (recording it on first use);
    return its sha256. ``DataError`` when it changed."""
    from datasets.ingest import DataError  # anndata: not imported at plan time

    path = Path(entry["path"])
    sha, size = checksum(path)
    if entry["sha256"] is not None:
        if sha != entry["sha256"]:
            raise DataError(f"dataset '{name}': "
                            + _changed_message(path, sha, size, entry["sha256"], f"given in datasets.{name}.file.sha256")
                            + "; restore the file or update that sha256")
        return sha
    record = lock_record(lock_path, name, source_id(entry))
    if record is None:
        record_in_lock(lock_path, name, source_id(entry), sha, size)
    elif sha != record["sha256"]:
        raise DataError(f"dataset '{name}': "
                        + _changed_message(path, sha, size, record["sha256"],
                                           f"recorded in {lock_path} on {record.get('recorded')}")
                        + f"; if you changed it on purpose, delete the '{name}' record from {lock_path}")
    return sha


def read_local(name: str, entry: dict, workdir: Path):
    """The AnnData of a local source (counts as in the file). ``DataError`` when unreadable."""
    from datasets.ingest import DataError

    path = Path(entry["path"])
    try:
        return read_payload(name, str(path), entry["format"], path, entry["genome"], workdir)
    except PayloadContentError as err:
        raise DataError(str(err)) from None
    except (OSError, KeyError, ValueError) as err:
        raise DataError(f"dataset '{name}': cannot read {path} as {entry['format']}: "
                        f"{' '.join(str(err).split())}") from None
