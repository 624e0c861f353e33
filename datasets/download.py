"""Dataset downloads: the registry validator and ``fetch``.

``load_registry(path)`` reads ``config/datasets.yaml`` and checks every entry (fields, types,
URLs, cross-field rules), raising ``RegistryError`` naming the entry and the field.

``fetch(name, entry, dest, lock_path)`` turns one registry entry into a raw h5ad at ``dest``
(``{out}/data/raw/{dataset}.h5ad``) with the dataset's original obs/var keys:

* streaming download with ``urllib`` (stdlib) and a browser-like User-Agent (the figshare
  ndownloader answers 403 or an empty body to non-browser clients);
* resume with an HTTP ``Range`` request into ``{dest}.{url-digest}.part``; a server that
  ignores ``Range`` (answers 200) makes the download restart from byte 0;
* retries with exponential backoff (``backoff * 2**(n-1)`` seconds) on connection errors,
  timeouts, truncated bodies, HTTP 5xx/408/429; other 4xx fail at once;
* checks, in order: payload signature (HDF5 for h5ad/10x h5, zip, gzip), expected size,
  sha256. When the registry publishes no sha256, the first download records sha256 + size
  per (dataset, URL) in the lock file and later downloads are verified against it;
* mirrors are tried in order (the registry's sha256/size apply to every URL of an entry;
  lock-file records are per URL because mirrors need not be byte-identical);
* formats: ``h5ad`` (moved as is), ``zip:<member.h5ad>`` (member extracted byte for byte),
  ``10x_h5`` (``scanpy.read_10x_h5``), ``10x_mtx_tar_gz`` (``scanpy.read_10x_mtx`` on the
  unpacked archive); ``parts`` (several files, one batch each, concatenated with
  ``obs[batch_key]`` = the part's batch and cell names suffixed ``-{batch}``); ``derive``
  (a subset of another entry's raw file, e.g. bct_del); ``bundled`` (a file shipped inside
  an installed package, verified by sha256, used before the URL);
* the result appears at ``dest`` only by an atomic rename, so ``dest`` is never incomplete.

Errors are ``DownloadError`` subclasses (``HTTPStatusError``, ``ServerUnreachableError``,
``SizeMismatchError``, ``ChecksumMismatchError``, ``NotHDF5Error``/``NotZipError``/
``NotGzipError``, ``PayloadContentError``), each naming the dataset, the URL and what was
received.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import http.client
import importlib.util
import logging
import os
import re
import shutil
import tarfile
import tempfile
import time
import urllib.error
import urllib.request
import warnings
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import yaml

log = logging.getLogger(__name__)

USER_AGENT = (
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/124.0 Safari/537.36"
)
HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
ZIP_SIGNATURE = b"PK\x03\x04"
GZIP_SIGNATURE = b"\x1f\x8b"
SHOWN_BYTES = 64  # how much of an unexpected body an error message quotes

# ----------------------------------------------------------------------------- errors


class DownloadError(RuntimeError):
    """Base class of every download failure; the message names dataset, URL and cause."""


class HTTPStatusError(DownloadError):
    """The server answered with an error status (4xx at once, 5xx after all retries)."""


class ServerUnreachableError(DownloadError):
    """Connection refused, DNS failure, timeout or truncated body on every attempt."""


class SizeMismatchError(DownloadError):
    """The downloaded payload has a different size than published or recorded."""


class ChecksumMismatchError(DownloadError):
    """The downloaded payload has a different sha256 than published or recorded."""


class UnexpectedPayloadError(DownloadError):
    """The body is not the expected file type (an HTML page, an empty body, ...)."""


class NotHDF5Error(UnexpectedPayloadError):
    """An h5ad / 10x h5 download does not start with the HDF5 signature."""


class NotZipError(UnexpectedPayloadError):
    """A zip download does not start with the zip signature."""


class NotGzipError(UnexpectedPayloadError):
    """A .tar.gz download does not start with the gzip signature."""


class PayloadContentError(DownloadError):
    """The payload is the right file type but lacks what the entry needs (member, matrix, cells)."""


class RegistryError(ValueError):
    """A registry entry is missing a field or has a malformed value."""


# ----------------------------------------------------------------------------- registry

REQUIRED_FIELDS = (
    "url", "mirrors", "sha256", "size", "format", "batch_key", "label_key", "system_key",
    "counts", "counts_integer", "expected_cells", "papers", "notes",
)
OPTIONAL_FIELDS: dict[str, Any] = {"derive": None, "parts": None, "bundled": None, "genome": None}
PART_REQUIRED = ("url", "batch")
PART_OPTIONAL: dict[str, Any] = {"mirrors": [], "sha256": None, "size": None}
PLAIN_FORMATS = ("h5ad", "10x_h5", "10x_mtx_tar_gz")
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
URL_RE = re.compile(r"^https?://[^\s/]+(/\S*)?$")
COUNTS_RE = re.compile(r"^(X|layers/[A-Za-z0-9_.-]+)$")
ZIP_FORMAT_RE = re.compile(r"^zip:\S+\.h5ad$")
BUNDLED_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_.]*:\S+$")


def _url_problem(value: Any) -> str | None:
    """Why ``value`` is not an http(s) URL, or None when it is one."""
    if isinstance(value, str) and URL_RE.match(value):
        return None
    return f"must be an http:// or https:// URL, got {value!r}"


def _url_list_problem(value: Any) -> str | None:
    """Why ``value`` is not a list of http(s) URLs, or None."""
    if not isinstance(value, list):
        return f"must be a list of URLs, got {value!r}"
    for item in value:
        problem = _url_problem(item)
        if problem:
            return f"list item {problem}"
    return None


def _sha256_problem(value: Any) -> str | None:
    if value is None or (isinstance(value, str) and SHA256_RE.match(value)):
        return None
    return f"must be null or 64 lowercase hex digits, got {value!r}"


def _size_problem(value: Any) -> str | None:
    if value is None or (isinstance(value, int) and not isinstance(value, bool) and value > 0):
        return None
    return f"must be null or a positive integer (bytes), got {value!r}"


def _optional_str_problem(value: Any) -> str | None:
    if value is None or (isinstance(value, str) and value.strip()):
        return None
    return f"must be null or a non-empty string, got {value!r}"


def _required_str_problem(value: Any) -> str | None:
    if isinstance(value, str) and value.strip():
        return None
    return f"must be a non-empty string, got {value!r}"


def _format_problem(value: Any) -> str | None:
    if value in PLAIN_FORMATS or (isinstance(value, str) and ZIP_FORMAT_RE.match(value)):
        return None
    return f"must be one of {', '.join(PLAIN_FORMATS)} or zip:<member>.h5ad, got {value!r}"


def _counts_problem(value: Any) -> str | None:
    if value is None or (isinstance(value, str) and COUNTS_RE.match(value)):
        return None
    return f"must be 'X', 'layers/<name>' or null (no counts in the file), got {value!r}"


def _bool_problem(value: Any) -> str | None:
    return None if isinstance(value, bool) else f"must be true or false, got {value!r}"


def _cells_problem(value: Any) -> str | None:
    return _size_problem(value) and f"must be null or a positive integer (cells), got {value!r}"


def _papers_problem(value: Any) -> str | None:
    if isinstance(value, list) and all(isinstance(p, str) and p.strip() for p in value):
        return None
    return f"must be a list of paper names, got {value!r}"


def _notes_problem(value: Any) -> str | None:
    return None if isinstance(value, str) else f"must be a string (one line of caveats), got {value!r}"


def _bundled_problem(value: Any) -> str | None:
    if value is None or (isinstance(value, str) and BUNDLED_RE.match(value)):
        return None
    return f"must be null or '<package>:<path inside the package>', got {value!r}"


FIELD_CHECKS = {
    "url": lambda v: None if v is None else _url_problem(v),
    "mirrors": _url_list_problem,
    "sha256": _sha256_problem,
    "size": _size_problem,
    "format": _format_problem,
    "batch_key": _optional_str_problem,
    "label_key": _optional_str_problem,
    "system_key": _optional_str_problem,
    "counts": _counts_problem,
    "counts_integer": _bool_problem,
    "expected_cells": _cells_problem,
    "papers": _papers_problem,
    "notes": _notes_problem,
    "bundled": _bundled_problem,
    "genome": _optional_str_problem,
}


def _fail(where: str, name: str, field: str | None, problem: str) -> RegistryError:
    """A RegistryError naming the registry file, the entry and the field."""
    at = f"entry '{name}'" + (f", field '{field}'" if field else "")
    return RegistryError(f"{where}: {at}: {problem}")


def _validate_part(where: str, name: str, index: int, part: Any) -> dict:
    """Check one item of ``parts`` and return it with optional fields filled in."""
    field = f"parts[{index}]"
    if not isinstance(part, dict):
        raise _fail(where, name, field, f"must be a mapping with url and batch, got {part!r}")
    unknown = sorted(set(part) - set(PART_REQUIRED) - set(PART_OPTIONAL))
    if unknown:
        raise _fail(where, name, field, f"unknown field(s) {unknown}")
    for key in PART_REQUIRED:
        if key not in part:
            raise _fail(where, name, f"{field}.{key}", "is missing")
    out = {**PART_OPTIONAL, **part}
    checks = {"url": _url_problem, "batch": _required_str_problem, "mirrors": _url_list_problem,
              "sha256": _sha256_problem, "size": _size_problem}
    for key, check in checks.items():
        problem = check(out[key])
        if problem:
            raise _fail(where, name, f"{field}.{key}", problem)
    return out


def _validate_derive(where: str, name: str, derive: Any) -> dict:
    """Check ``derive: {from: <entry>, drop: {obs column: value or [values]}}``."""
    if not isinstance(derive, dict) or set(derive) != {"from", "drop"}:
        raise _fail(where, name, "derive", f"must be a mapping with exactly 'from' and 'drop', got {derive!r}")
    if not isinstance(derive["from"], str) or not derive["from"]:
        raise _fail(where, name, "derive.from", f"must name another entry, got {derive['from']!r}")
    drop = derive["drop"]
    if not isinstance(drop, dict) or not drop:
        raise _fail(where, name, "derive.drop", f"must be a non-empty mapping obs column -> value(s), got {drop!r}")
    for column, values in drop.items():
        items = values if isinstance(values, list) else [values]
        if not items or not all(isinstance(v, str | int | float | bool) for v in items):
            raise _fail(where, name, f"derive.drop.{column}", f"must be a value or a list of values, got {values!r}")
    return derive


def _check_sources(where: str, name: str, entry: dict) -> None:
    """Cross-field rules: exactly one of url / parts / derive (bundled may come with a url)."""
    sources = [k for k in ("url", "parts", "derive") if entry[k] is not None]
    if entry["bundled"] is not None and entry["url"] is None and not sources:
        sources = ["bundled"]
    if len(sources) != 1:
        raise _fail(where, name, None, f"needs exactly one of url, parts, derive (bundled may add to url); got {sources or 'none'}")
    if entry["mirrors"] and entry["url"] is None:
        raise _fail(where, name, "mirrors", "mirrors need a url (parts carry their own mirrors)")
    if entry["bundled"] is not None and entry["sha256"] is None:
        raise _fail(where, name, "sha256", "a bundled file needs a published sha256 to be verified")
    if entry["parts"] is not None:
        if entry["batch_key"] is None:
            raise _fail(where, name, "batch_key", "an entry with parts needs a batch_key (the column the parts' batches go to)")
        if entry["sha256"] is not None or entry["size"] is not None:
            raise _fail(where, name, "sha256", "an entry with parts takes sha256/size per part, not at the entry level")
    if entry["derive"] is not None and entry["format"] != "h5ad":
        raise _fail(where, name, "format", f"a derived entry is written as h5ad; format must be 'h5ad', got {entry['format']!r}")
    if entry["genome"] is not None and not entry["format"].startswith("10x"):
        raise _fail(where, name, "genome", "genome only applies to 10x formats")


def validate_entry(name: Any, entry: Any, where: str = "dataset registry") -> dict:
    """Check one registry entry and return a copy with the optional fields filled in.

    Raises ``RegistryError`` naming ``where`` (the registry file), the entry and the field.
    References between entries (``derive.from``) are checked by ``load_registry``.
    """
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise _fail(where, str(name), None, "the entry name must be letters, digits, '_', '.', '-' (it becomes a file name)")
    if not isinstance(entry, dict):
        raise _fail(where, name, None, f"must be a mapping of fields, got {type(entry).__name__}")
    unknown = sorted(set(entry) - set(REQUIRED_FIELDS) - set(OPTIONAL_FIELDS))
    if unknown:
        raise _fail(where, name, unknown[0], f"unknown field (allowed: {', '.join(REQUIRED_FIELDS + tuple(OPTIONAL_FIELDS))})")
    for field in REQUIRED_FIELDS:
        if field not in entry:
            raise _fail(where, name, field, "is missing")
    out = {**OPTIONAL_FIELDS, **entry}
    for field, check in FIELD_CHECKS.items():
        problem = check(out[field])
        if problem:
            raise _fail(where, name, field, problem)
    if out["parts"] is not None:
        if not isinstance(out["parts"], list) or not out["parts"]:
            raise _fail(where, name, "parts", f"must be a non-empty list of {{url, batch}}, got {out['parts']!r}")
        out["parts"] = [_validate_part(where, name, i, p) for i, p in enumerate(out["parts"])]
        batches = [p["batch"] for p in out["parts"]]
        if len(set(batches)) != len(batches):
            raise _fail(where, name, "parts", f"batch names must be unique, got {batches}")
    if out["derive"] is not None:
        out["derive"] = _validate_derive(where, name, out["derive"])
    _check_sources(where, name, out)
    return out


def _check_derive_graph(where: str, entries: dict[str, dict]) -> None:
    """Every ``derive.from`` names an entry; no entry derives from itself, directly or not."""
    for name, entry in entries.items():
        seen = [name]
        current = entry
        while current["derive"] is not None:
            source = current["derive"]["from"]
            if source not in entries:
                raise _fail(where, name, "derive.from", f"names no entry of the registry: {source!r}")
            if source in seen:
                raise _fail(where, name, "derive.from", f"derivation cycle {' -> '.join(seen + [source])}")
            seen.append(source)
            current = entries[source]


def load_registry(path: str | Path) -> dict[str, dict]:
    """Read and validate the dataset registry (``datasets: {name: entry}``); return name -> entry."""
    path = Path(path)
    try:
        document = yaml.safe_load(path.read_text())
    except OSError as err:
        raise RegistryError(f"{path}: cannot read the dataset registry: {err}") from err
    except yaml.YAMLError as err:
        raise RegistryError(f"{path}: not valid YAML: {err}") from err
    if not isinstance(document, dict) or not isinstance(document.get("datasets"), dict) or not document["datasets"]:
        raise RegistryError(f"{path}: expected a top-level mapping 'datasets:' with at least one entry")
    entries = {name: validate_entry(name, entry, str(path)) for name, entry in document["datasets"].items()}
    _check_derive_graph(str(path), entries)
    return entries


# ----------------------------------------------------------------------------- lock file


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
    """The lock file as {dataset: {url: {sha256, size, recorded}}}; empty when absent."""
    lock_path = Path(lock_path)
    if not lock_path.exists():
        return {}
    try:
        document = yaml.safe_load(lock_path.read_text()) or {}
    except yaml.YAMLError as err:
        raise RegistryError(f"{lock_path}: the download lock file is not valid YAML: {err}") from err
    if not isinstance(document, dict):
        raise RegistryError(f"{lock_path}: the download lock file must map dataset -> url -> record")
    return document


def _lock_record(lock_path: Path, name: str, url: str) -> dict | None:
    """The recorded {sha256, size, recorded} for (dataset, url), or None."""
    with _locked(lock_path):
        records = read_lock(lock_path).get(name) or {}
    record = records.get(url) if isinstance(records, dict) else None
    if record is not None and not (isinstance(record, dict) and SHA256_RE.match(str(record.get("sha256")))):
        raise RegistryError(f"{lock_path}: record for dataset '{name}', url {url} has no valid sha256: {record!r}")
    return record


def _record_in_lock(lock_path: Path, name: str, url: str, sha256: str, size: int) -> None:
    """Add the first download's sha256 + size for (dataset, url); written atomically."""
    with _locked(lock_path):
        document = read_lock(lock_path)
        document.setdefault(name, {})[url] = {
            "sha256": sha256, "size": size, "recorded": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        }
        header = "# sha256 + size of first downloads of datasets without a published checksum (datasets/download.py)\n"
        tmp = lock_path.with_name(f".{lock_path.name}.{os.getpid()}.tmp")
        tmp.write_text(header + yaml.safe_dump(document, sort_keys=True))
        os.replace(tmp, lock_path)


# ----------------------------------------------------------------------------- HTTP transfer


@dataclass(frozen=True)
class Policy:
    """Retry/timeout/chunk settings of one fetch."""

    retries: int
    timeout: float
    backoff: float
    chunk: int


@dataclass(frozen=True)
class PayloadKind:
    """What a download must look like: a name, its leading bytes, the error raised otherwise."""

    label: str
    signature: bytes
    error: type[UnexpectedPayloadError]


def payload_kind(fmt: str) -> PayloadKind:
    """The expected payload type of a registry format."""
    if fmt in ("h5ad", "10x_h5"):
        return PayloadKind("HDF5", HDF5_SIGNATURE, NotHDF5Error)
    if fmt.startswith("zip:"):
        return PayloadKind("zip", ZIP_SIGNATURE, NotZipError)
    if fmt == "10x_mtx_tar_gz":
        return PayloadKind("gzip (.tar.gz)", GZIP_SIGNATURE, NotGzipError)
    raise ValueError(f"unknown dataset format {fmt!r}")


class _Transient(Exception):
    """A failed attempt worth retrying; ``progressed`` says whether bytes arrived first."""

    def __init__(self, message: str, progressed: bool, status: int | None = None):
        super().__init__(message)
        self.progressed = progressed
        self.status = status


class _Restart(Exception):
    """The .part file cannot be resumed; start again from byte 0 without waiting."""


@dataclass
class _Received:
    """What the server said about the body that completed the .part file."""

    status: int
    content_type: str | None


def _open(url: str, offset: int, timeout: float) -> http.client.HTTPResponse:
    """GET ``url`` (from ``offset`` with a Range header) with a browser-like User-Agent."""
    headers = {"User-Agent": USER_AGENT, "Accept": "*/*"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    return urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout)


def _content_range(value: str | None) -> tuple[int | None, int | None]:
    """(first byte, total size) of a Content-Range header such as 'bytes 100-199/200' or 'bytes */200'."""
    match = re.match(r"^bytes\s+(?:(\d+)-\d+|\*)/(\d+|\*)$", (value or "").strip())
    if not match:
        return None, None
    start = int(match.group(1)) if match.group(1) else None
    total = int(match.group(2)) if match.group(2) != "*" else None
    return start, total


def _peek(response: Any) -> bytes:
    """The first bytes of an error body, for the error message (never raises)."""
    try:
        return response.read(SHOWN_BYTES)
    except Exception:  # a body we cannot read is simply not quoted
        return b""


def _check_signature(name: str, url: str, head: bytes, kind: PayloadKind, status: int,
                     content_type: str | None, total: int) -> None:
    """Raise ``kind.error`` when ``head`` does not start with the expected file signature."""
    if head[: len(kind.signature)] == kind.signature:
        return
    raise kind.error(
        f"dataset '{name}': {url} did not return the expected {kind.label} file: HTTP {status}, "
        f"Content-Type {content_type!r}, {total} bytes received, first bytes {head[:SHOWN_BYTES]!r}"
    )


def _transfer_once(name: str, url: str, part: Path, kind: PayloadKind, policy: Policy) -> _Received:
    """One GET: resume or (re)start ``part`` and stream the body into it.

    Returns when the server's body is complete; raises ``_Transient`` for retryable failures,
    ``_Restart`` when the partial file must be discarded, ``DownloadError`` otherwise.
    """
    offset = part.stat().st_size if part.exists() else 0
    try:
        response = _open(url, offset, policy.timeout)
    except urllib.error.HTTPError as err:
        try:
            if err.code == 416 and offset:
                # Range not satisfiable: the .part may already hold the whole file.
                _, total = _content_range(err.headers.get("Content-Range"))
                if total == offset:
                    return _Received(206, err.headers.get("Content-Type"))
                raise _Restart(f"HTTP 416 for a .part of {offset} bytes (server total {total})") from None
            body = _peek(err)
            message = (f"dataset '{name}': GET {url} failed with HTTP {err.code} {err.reason}: "
                       f"Content-Type {err.headers.get('Content-Type')!r}, first bytes {body!r}")
            if err.code >= 500 or err.code in (408, 429):
                raise _Transient(message, progressed=False, status=err.code) from None
            raise HTTPStatusError(message) from None
        finally:
            err.close()
    except (urllib.error.URLError, OSError, http.client.HTTPException) as err:
        reason = getattr(err, "reason", err)
        raise _Transient(f"{type(err).__name__}: {reason}", progressed=False) from None

    with response:
        status = response.status
        content_type = response.headers.get("Content-Type")
        resumed = offset > 0 and status == 206
        if resumed:
            start, _ = _content_range(response.headers.get("Content-Range"))
            if start != offset:
                raise _Restart(f"asked for bytes {offset}-, server sent Content-Range "
                               f"{response.headers.get('Content-Range')!r}")
        elif offset:
            log.info("dataset %s: %s ignored the Range header (HTTP %s); restarting", name, url, status)
        length = response.headers.get("Content-Length")
        expected_body = int(length) if length and length.isdigit() else None
        written = 0
        head = b""
        checked = resumed  # a resumed body does not start at byte 0; _verify checks the file head
        with open(part, "ab" if resumed else "wb") as handle:
            while True:
                try:
                    block = response.read(policy.chunk)
                except (OSError, http.client.HTTPException) as err:
                    raise _Transient(f"transfer interrupted after {written} bytes: {err!r}", written > 0) from None
                if not block:
                    break
                if len(head) < SHOWN_BYTES:
                    head += block[: SHOWN_BYTES - len(head)]
                if not checked and len(head) >= len(kind.signature):
                    # Fail early on an HTML page instead of downloading all of it.
                    try:
                        _check_signature(name, url, head, kind, status, content_type, written + len(block))
                    except UnexpectedPayloadError:
                        handle.close()
                        part.unlink(missing_ok=True)
                        raise
                    checked = True
                handle.write(block)
                written += len(block)
        # http.client.read(amt) returns b"" on a closed connection without raising, so a
        # truncated body is detected here by comparing with Content-Length.
        if expected_body is not None and written < expected_body:
            raise _Transient(f"connection closed after {written} of {expected_body} bytes", written > 0)
    return _Received(status, content_type)


def _download_url(name: str, url: str, part: Path, kind: PayloadKind, policy: Policy) -> _Received:
    """Complete ``part`` from ``url``, resuming and retrying; return the final response info."""
    failures = 0
    while True:
        try:
            return _transfer_once(name, url, part, kind, policy)
        except _Restart as why:
            log.warning("dataset %s: cannot resume %s (%s); restarting from byte 0", name, url, why)
            part.unlink(missing_ok=True)
            failures += 1
            last: _Transient = _Transient(str(why), progressed=False)
        except _Transient as err:
            failures = 0 if err.progressed else failures + 1
            last = err
        if failures > policy.retries:
            attempts = policy.retries + 1
            if last.status is not None:
                raise HTTPStatusError(f"{last} (after {attempts} attempts)")
            raise ServerUnreachableError(
                f"dataset '{name}': {url} unreachable after {attempts} attempts "
                f"(timeout {policy.timeout}s, backoff {policy.backoff}s): last error: {last}"
            )
        delay = policy.backoff * 2 ** max(failures - 1, 0)
        log.warning("dataset %s: %s: %s; retrying in %.3gs", name, url, last, delay)
        time.sleep(delay)


def sha256_of(path: Path, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def part_path(dest: Path, url: str) -> Path:
    """The resumable download file of ``url`` for ``dest`` (stable across runs, one per URL)."""
    digest = hashlib.sha1(url.encode()).hexdigest()[:12]
    return dest.with_name(f"{dest.name}.{digest}.part")


def _verify(name: str, url: str, part: Path, kind: PayloadKind, received: _Received,
            expected_sha: str | None, expected_size: int | None, source: str) -> tuple[str, int]:
    """Check signature, size and sha256 of a complete ``part``; delete it when it is wrong."""
    size = part.stat().st_size
    with open(part, "rb") as handle:
        head = handle.read(SHOWN_BYTES)
    try:
        _check_signature(name, url, head, kind, received.status, received.content_type, size)
        if expected_size is not None and size != expected_size:
            raise SizeMismatchError(
                f"dataset '{name}': {url}: size mismatch: expected {expected_size} bytes ({source}), got {size}")
        got = sha256_of(part)
        if expected_sha is not None and got != expected_sha:
            raise ChecksumMismatchError(
                f"dataset '{name}': {url}: sha256 mismatch: expected {expected_sha} ({source}), got {got} ({size} bytes)")
    except DownloadError:
        part.unlink(missing_ok=True)
        raise
    return got, size


def _download_verified(name: str, url: str, part: Path, kind: PayloadKind, policy: Policy,
                       sha256: str | None, size: int | None, lock_path: Path) -> Path:
    """Download ``url`` into ``part`` and verify it against the registry or the lock file."""
    record = None if sha256 is not None else _lock_record(lock_path, name, url)
    if sha256 is not None:
        expected_sha, expected_size, source = sha256, size, "published in the registry"
    elif record is not None:
        expected_sha = record["sha256"]
        expected_size = size if size is not None else record.get("size")
        source = f"recorded in {lock_path} on {record.get('recorded')}"
    else:
        expected_sha, expected_size, source = None, size, "published in the registry"
    log.info("dataset %s: downloading %s", name, url)
    received = _download_url(name, url, part, kind, policy)
    got_sha, got_size = _verify(name, url, part, kind, received, expected_sha, expected_size, source)
    if sha256 is None and record is None:
        _record_in_lock(lock_path, name, url, got_sha, got_size)
        log.info("dataset %s: recorded sha256 %s (%d bytes) of %s in %s", name, got_sha, got_size, url, lock_path)
    return part


def _download_first(name: str, urls: list[str], dest: Path, kind: PayloadKind, policy: Policy,
                    sha256: str | None, size: int | None, lock_path: Path) -> tuple[Path, str]:
    """Try ``urls`` in order (primary, then mirrors); return the verified payload file and its URL."""
    errors: list[DownloadError] = []
    for url in urls:
        try:
            return _download_verified(name, url, part_path(dest, url), kind, policy, sha256, size, lock_path), url
        except DownloadError as err:
            log.warning("%s", err)
            errors.append(err)
    if len(errors) == 1:
        raise errors[0]
    combined = "; ".join(f"[{url}] {err}" for url, err in zip(urls, errors))
    raise type(errors[0])(f"dataset '{name}': every source failed: {combined}") from errors[-1]


# ----------------------------------------------------------------------------- payload -> AnnData


def _temp_h5ad(dest: Path) -> Path:
    """A temporary name beside ``dest`` (same file system, so os.replace is atomic)."""
    return dest.with_name(f".{dest.stem}.{os.getpid()}.tmp.h5ad")


def _write_h5ad_atomic(adata: Any, dest: Path) -> None:
    """Write an AnnData to ``dest`` via a temporary file and an atomic rename."""
    tmp = _temp_h5ad(dest)
    try:
        adata.write_h5ad(tmp)
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)


def _extract_zip_member(name: str, url: str, archive: Path, member: str, target: Path) -> None:
    """Copy ``member`` (exact path, else a unique basename match) of a zip to ``target`` atomically."""
    try:
        with zipfile.ZipFile(archive) as bundle:
            names = [n for n in bundle.namelist() if not n.endswith("/")]
            matches = [n for n in names if n == member] or [n for n in names if Path(n).name == Path(member).name]
            if len(matches) != 1:
                raise PayloadContentError(
                    f"dataset '{name}': zip from {url} has {len(matches)} members matching {member!r}; "
                    f"members: {names[:20]}")
            tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
            try:
                with bundle.open(matches[0]) as source, open(tmp, "wb") as sink:
                    shutil.copyfileobj(source, sink, 1 << 20)
                with open(tmp, "rb") as handle:
                    head = handle.read(SHOWN_BYTES)
                if not head.startswith(HDF5_SIGNATURE):
                    raise NotHDF5Error(f"dataset '{name}': zip member {matches[0]!r} from {url} is not HDF5: "
                                       f"first bytes {head!r}")
                os.replace(tmp, target)
            finally:
                tmp.unlink(missing_ok=True)
    except zipfile.BadZipFile as err:
        raise PayloadContentError(f"dataset '{name}': {url} is not a readable zip archive: {err}") from err


def _read_10x_mtx_tar(name: str, url: str, archive: Path, genome: str | None, workdir: Path) -> Any:
    """Unpack a 10x matrix tarball and read the (single, or ``genome``) matrix folder."""
    import scanpy as sc  # imported here: scanpy takes seconds to import and plain downloads never need it

    try:
        with tarfile.open(archive, "r:gz") as bundle:
            bundle.extractall(workdir, filter="data")  # the "data" filter refuses absolute/escaping paths
    except (tarfile.TarError, OSError, EOFError) as err:
        raise PayloadContentError(f"dataset '{name}': {url} is not a readable .tar.gz archive: {err}") from err
    folders = sorted({p.parent for p in workdir.rglob("matrix.mtx*")})
    if genome is not None:
        folders = [f for f in folders if f.name == genome]
    if len(folders) != 1:
        found = [str(f.relative_to(workdir)) for f in sorted({p.parent for p in workdir.rglob("matrix.mtx*")})]
        raise PayloadContentError(
            f"dataset '{name}': {url} should hold one 10x matrix folder (genome {genome!r}); found {found}")
    return sc.read_10x_mtx(folders[0])


def _read_payload(name: str, url: str, fmt: str, payload: Path, genome: str | None, workdir: Path) -> Any:
    """Read a verified payload of any format into an AnnData (counts as delivered)."""
    import anndata as ad
    import scanpy as sc  # see _read_10x_mtx_tar on the lazy import

    if fmt == "h5ad":
        return ad.read_h5ad(payload)
    if fmt.startswith("zip:"):
        member = workdir / "member.h5ad"
        _extract_zip_member(name, url, payload, fmt[len("zip:"):], member)
        return ad.read_h5ad(member)
    if fmt == "10x_h5":
        try:
            adata = sc.read_10x_h5(payload, genome=genome)
        except (KeyError, ValueError, OSError) as err:
            raise PayloadContentError(f"dataset '{name}': {url} is HDF5 but not a readable 10x h5: {err}") from err
        adata.var_names_make_unique()
        return adata
    if fmt == "10x_mtx_tar_gz":
        return _read_10x_mtx_tar(name, url, payload, genome, workdir)
    raise ValueError(f"unknown dataset format {fmt!r}")


def _materialize(name: str, entry: dict, url: str, payload: Path, dest: Path) -> None:
    """Turn one verified payload into ``dest`` (byte copy for h5ad/zip, conversion for 10x)."""
    fmt = entry["format"]
    if fmt == "h5ad":
        os.replace(payload, dest)
        return
    if fmt.startswith("zip:"):
        _extract_zip_member(name, url, payload, fmt[len("zip:"):], dest)
    else:
        with tempfile.TemporaryDirectory(dir=dest.parent, prefix=f".{name}-unpack-") as workdir:
            adata = _read_payload(name, url, fmt, payload, entry["genome"], Path(workdir))
            _write_h5ad_atomic(adata, dest)
    payload.unlink(missing_ok=True)


def _fetch_parts(name: str, entry: dict, dest: Path, lock_path: Path, policy: Policy) -> None:
    """Download every part, label its cells with its batch, concatenate, write ``dest``."""
    import anndata as ad

    kind = payload_kind(entry["format"])
    adatas: dict[str, Any] = {}
    payloads = []
    with tempfile.TemporaryDirectory(dir=dest.parent, prefix=f".{name}-parts-") as workdir:
        for index, part in enumerate(entry["parts"]):
            urls = [part["url"], *part["mirrors"]]
            payload, url = _download_first(name, urls, dest, kind, policy, part["sha256"], part["size"], lock_path)
            partdir = Path(workdir) / str(index)
            partdir.mkdir()
            adatas[part["batch"]] = _read_payload(name, url, entry["format"], payload, entry["genome"], partdir)
            payloads.append(payload)
        # Inner join: parts of one dataset share a reference; genes missing from a part are dropped.
        combined = ad.concat(adatas, join="inner", label=entry["batch_key"], index_unique="-", merge="same")
        _write_h5ad_atomic(combined, dest)
    for payload in payloads:
        payload.unlink(missing_ok=True)


def _derive(name: str, entry: dict, source_path: Path, dest: Path) -> None:
    """Write ``dest`` = the source raw file minus the cells matching every ``drop`` condition."""
    import anndata as ad
    import numpy as np

    adata = ad.read_h5ad(source_path)
    drop = entry["derive"]["drop"]
    mask = np.ones(adata.n_obs, dtype=bool)
    for column, values in drop.items():
        if column not in adata.obs:
            raise PayloadContentError(f"dataset '{name}': derive.drop column {column!r} is not in obs of "
                                      f"{source_path} (columns: {list(adata.obs.columns)})")
        wanted = [str(v) for v in (values if isinstance(values, list) else [values])]
        mask &= adata.obs[column].astype(str).isin(wanted).to_numpy()
    if not mask.any():
        raise PayloadContentError(f"dataset '{name}': derive.drop {drop} matched no cell of {source_path}; "
                                  "check the column values")
    log.info("dataset %s: dropping %d of %d cells of %s", name, int(mask.sum()), adata.n_obs, source_path)
    _write_h5ad_atomic(adata[~mask].copy(), dest)


def _bundled_file(spec: str) -> Path | None:
    """The path of '<package>:<relative path>' in the installed package, or None if absent."""
    package, relative = spec.split(":", 1)
    found = importlib.util.find_spec(package)
    if found is None or not found.submodule_search_locations:
        return None
    for location in found.submodule_search_locations:
        candidate = Path(location) / relative
        if candidate.is_file():
            return candidate
    return None


def _copy_bundled(name: str, entry: dict, dest: Path) -> bool:
    """Copy a verified bundled file to ``dest``; False when absent or different (then download)."""
    source = _bundled_file(entry["bundled"])
    if source is None:
        return False
    if sha256_of(source) != entry["sha256"]:
        warnings.warn(f"dataset '{name}': bundled {source} differs from the registry sha256; downloading instead",
                      stacklevel=3)
        return False
    tmp = _temp_h5ad(dest)
    try:
        shutil.copyfile(source, tmp)
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)
    return True


def fetch(name: str, entry: dict, dest: str | Path, lock_path: str | Path, *, retries: int = 5,
          timeout: float = 60, backoff: float = 1.0, chunk: int = 1 << 20,
          registry: dict[str, dict] | None = None) -> Path:
    """Download registry entry ``name`` and write it as a raw h5ad at ``dest``; return ``dest``.

    ``retries``: retries after the first attempt for each URL (attempts that received bytes
    do not count); ``timeout``: socket timeout in seconds; ``backoff``: first retry delay in
    seconds, doubled each time; ``chunk``: bytes per read. ``lock_path``: the YAML file
    recording sha256 + size of first downloads without a published checksum.
    ``registry``: needed for ``derive`` entries whose source raw file
    (``dest.parent / '<from>.h5ad'``) does not exist yet; the source is then fetched first.
    Partial downloads stay beside ``dest`` as ``*.part`` files and are resumed next time.
    """
    entry = validate_entry(name, entry)
    dest, lock_path = Path(dest), Path(lock_path)
    dest.parent.mkdir(parents=True, exist_ok=True)
    policy = Policy(retries=retries, timeout=timeout, backoff=backoff, chunk=chunk)
    if entry["derive"] is not None:
        source_name = entry["derive"]["from"]
        source_path = dest.parent / f"{source_name}.h5ad"
        if not source_path.exists():
            if registry is None or source_name not in registry:
                raise PayloadContentError(f"dataset '{name}' derives from '{source_name}': {source_path} does not "
                                          "exist and no registry entry was given to fetch it")
            fetch(source_name, registry[source_name], source_path, lock_path, retries=retries,
                  timeout=timeout, backoff=backoff, chunk=chunk, registry=registry)
        _derive(name, entry, source_path, dest)
    elif entry["parts"] is not None:
        _fetch_parts(name, entry, dest, lock_path, policy)
    elif entry["bundled"] is not None and _copy_bundled(name, entry, dest):
        log.info("dataset %s: copied the bundled file %s", name, entry["bundled"])
    else:
        if entry["url"] is None:
            raise PayloadContentError(f"dataset '{name}': bundled file {entry['bundled']} is not installed "
                                      "and the entry has no url")
        urls = [entry["url"], *entry["mirrors"]]
        kind = payload_kind(entry["format"])
        payload, url = _download_first(name, urls, dest, kind, policy, entry["sha256"], entry["size"], lock_path)
        _materialize(name, entry, url, payload, dest)
    log.info("dataset %s: wrote %s", name, dest)
    return dest

