"""Dataset downloads: ``fetch`` (the registry itself is read by datasets/registry.py).

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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from datasets.lock import lock_record, record_in_lock
from datasets.registry import validate_entry

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
    record = None if sha256 is not None else lock_record(lock_path, name, url)
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
        record_in_lock(lock_path, name, url, got_sha, got_size)
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


def read_payload(name: str, url: str, fmt: str, payload: Path, genome: str | None, workdir: Path) -> Any:
    """Read a verified payload of any format into an AnnData (counts as delivered); ``url`` names
    it in messages."""
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
    if fmt == "10x_mtx":  # a local folder (file: datasets)
        try:
            return sc.read_10x_mtx(payload)
        except (OSError, ValueError, KeyError) as err:
            raise PayloadContentError(f"dataset '{name}': {url} is not a readable 10x matrix folder: {err}") from err
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
            adata = read_payload(name, url, fmt, payload, entry["genome"], Path(workdir))
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
            adatas[part["batch"]] = read_payload(name, url, entry["format"], payload, entry["genome"], partdir)
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

