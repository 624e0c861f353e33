"""Tests of datasets/download.py against a local HTTP server (never the internet)."""

from __future__ import annotations

import copy
import hashlib
import io
import socket
import tarfile
import threading
import time
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.io
import scipy.sparse as sp
import yaml

from datasets import download as dl
from datasets import registry as reg

REPO = Path(__file__).resolve().parent.parent
REGISTRY = REPO / "config" / "datasets.yaml"

# ----------------------------------------------------------------------------- payloads


def tiny_adata(n_cells: int = 24, n_genes: int = 6, seed: int = 0) -> ad.AnnData:
    """Integer counts, two batches, two cell types."""
    rng = np.random.default_rng(seed)
    adata = ad.AnnData(X=rng.poisson(2.0, size=(n_cells, n_genes)).astype(np.float32))
    adata.obs_names = [f"cell{i}" for i in range(n_cells)]
    adata.var_names = [f"gene{j}" for j in range(n_genes)]
    adata.obs["BATCH"] = pd.Categorical(["a", "b"] * (n_cells // 2))
    adata.obs["celltype"] = pd.Categorical(["x"] * (n_cells // 4) + ["y"] * (n_cells - n_cells // 4))
    return adata


def h5ad_bytes(adata: ad.AnnData, tmp_dir: Path, stem: str) -> bytes:
    path = tmp_dir / f"{stem}.h5ad"
    adata.write_h5ad(path)
    return path.read_bytes()


def zip_bytes(member: str, payload: bytes) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as bundle:
        bundle.writestr("README.txt", "not the data")
        bundle.writestr(member, payload)
    return buffer.getvalue()


def tenx_mtx_tar_gz(counts: np.ndarray, barcodes: list[str], genes: list[str]) -> bytes:
    """A Cell Ranger 1.x style tarball: filtered_gene_bc_matrices/hg19/{matrix.mtx,genes.tsv,barcodes.tsv}."""
    files = {}
    mtx = io.BytesIO()
    scipy.io.mmwrite(mtx, sp.coo_matrix(counts.T), field="integer")  # 10x stores genes x cells
    files["matrix.mtx"] = mtx.getvalue()
    files["genes.tsv"] = "".join(f"ENSG{i:05d}\t{g}\n" for i, g in enumerate(genes)).encode()
    files["barcodes.tsv"] = "".join(f"{b}\n" for b in barcodes).encode()
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as bundle:
        for name, data in files.items():
            info = tarfile.TarInfo(f"filtered_gene_bc_matrices/hg19/{name}")
            info.size = len(data)
            bundle.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def tenx_h5(counts: np.ndarray, genes: list[str], path: Path) -> bytes:
    """A Cell Ranger 3 style filtered_feature_bc_matrix.h5 (CSC genes x cells under /matrix)."""
    import h5py

    by_cell = sp.csr_matrix(counts)  # CSR of cells x genes == CSC of genes x cells
    with h5py.File(path, "w") as handle:
        matrix = handle.create_group("matrix")
        matrix["barcodes"] = np.array([f"CELL{i}-1".encode() for i in range(counts.shape[0])])
        matrix["data"], matrix["indices"], matrix["indptr"] = by_cell.data, by_cell.indices, by_cell.indptr
        matrix["shape"] = np.array([counts.shape[1], counts.shape[0]])
        features = matrix.create_group("features")
        features["id"] = np.array([f"ENSG{j:05d}".encode() for j in range(len(genes))])
        features["name"] = np.array([g.encode() for g in genes])
        features["feature_type"] = np.array([b"Gene Expression"] * len(genes))
        features["genome"] = np.array([b"GRCh38"] * len(genes))
        features["_all_tag_keys"] = np.array([b"genome"])
    return path.read_bytes()


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# ----------------------------------------------------------------------------- local server


class Handler(BaseHTTPRequestHandler):
    """Dispatches GETs to ``server.routes[path](handler, state)`` and logs path + Range."""

    def do_GET(self):  # noqa: N802 - the http.server API name
        self.server.requests.append((self.path, self.headers.get("Range"), self.headers.get("User-Agent")))
        route = self.server.routes.get(self.path)
        if route is None:
            self.reply(404, b"<html>not found</html>", "text/html")
            return
        route(self)

    def reply(self, status: int, body: bytes, content_type: str = "application/octet-stream",
              headers: dict | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(body)

    def serve(self, data: bytes, honour_range: bool = True) -> None:
        """200 with the whole file, or 206/416 for a Range request when ``honour_range``."""
        requested = self.headers.get("Range")
        if not (requested and honour_range):
            self.reply(200, data)
            return
        start = int(requested.split("=")[1].split("-")[0])
        if start >= len(data):
            self.reply(416, b"", headers={"Content-Range": f"bytes */{len(data)}"})
            return
        self.reply(206, data[start:], headers={"Content-Range": f"bytes {start}-{len(data) - 1}/{len(data)}"})

    def log_message(self, *args):
        pass


class LocalServer:
    def __init__(self):
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.httpd.routes = {}
        self.httpd.requests = []
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}{path}"

    def route(self, path: str, behaviour) -> str:
        self.httpd.routes[path] = behaviour
        return self.url(path)

    def requests_for(self, path: str) -> list[tuple]:
        return [r for r in self.httpd.requests if r[0] == path]


@pytest.fixture
def server():
    local = LocalServer()
    yield local
    local.httpd.shutdown()
    local.httpd.server_close()
    local.thread.join(timeout=5)


@pytest.fixture(scope="module")
def good(tmp_path_factory) -> bytes:
    return h5ad_bytes(tiny_adata(), tmp_path_factory.mktemp("payload"), "good")


def closed_port_url() -> str:
    """A URL on a port nothing listens on (bound, then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}/file.h5ad"


def make_entry(url: str | None, **fields) -> dict:
    entry = {
        "url": url, "mirrors": [], "sha256": None, "size": None, "format": "h5ad", "batch_key": "BATCH",
        "label_key": "celltype", "system_key": None, "counts": "X", "counts_integer": True,
        "expected_cells": None, "papers": ["test"], "notes": "test entry",
    }
    entry.update(fields)
    return entry


FAST = {"retries": 2, "backoff": 0.001, "timeout": 5}


def no_leftovers(folder: Path, dest: Path) -> bool:
    """Nothing at dest and no temporary files (a .part may legitimately remain only for resumes)."""
    return not dest.exists() and not [p for p in folder.iterdir() if ".tmp" in p.name]


# ----------------------------------------------------------------------------- download tests


def test_good_h5ad_is_byte_identical_and_recorded(server, good, tmp_path):
    url = server.route("/good.h5ad", lambda h: h.serve(good))
    dest, lock = tmp_path / "raw" / "good.h5ad", tmp_path / "lock.yaml"
    out = dl.fetch("good", make_entry(url), dest, lock, **FAST)
    assert out == dest and dest.read_bytes() == good
    assert not list(dest.parent.glob("*.part"))
    assert "Mozilla" in server.requests_for("/good.h5ad")[0][2]
    record = yaml.safe_load(lock.read_text())["good"][url]
    assert record["sha256"] == sha(good) and record["size"] == len(good)


def test_published_checksum_mismatch_names_expected_and_got(server, good, tmp_path):
    url = server.route("/good.h5ad", lambda h: h.serve(good))
    dest = tmp_path / "bad.h5ad"
    with pytest.raises(dl.ChecksumMismatchError) as err:
        dl.fetch("bad", make_entry(url, sha256="0" * 64), dest, tmp_path / "lock.yaml", **FAST)
    message = str(err.value)
    assert "'bad'" in message and url in message and "0" * 64 in message and sha(good) in message
    assert no_leftovers(tmp_path, dest) and not list(tmp_path.glob("*.part"))


def test_size_mismatch(server, good, tmp_path):
    url = server.route("/good.h5ad", lambda h: h.serve(good))
    with pytest.raises(dl.SizeMismatchError, match=f"expected {len(good) + 1} bytes"):
        dl.fetch("sized", make_entry(url, size=len(good) + 1), tmp_path / "s.h5ad", tmp_path / "lock.yaml", **FAST)
    assert not (tmp_path / "s.h5ad").exists()


def test_truncated_transfer_resumes_with_range(server, good, tmp_path):
    cut = len(good) // 3
    calls = {"n": 0}

    def flaky(handler):
        calls["n"] += 1
        if calls["n"] == 1:  # promise the whole file, send a third, close the connection
            handler.send_response(200)
            handler.send_header("Content-Length", str(len(good)))
            handler.end_headers()
            handler.wfile.write(good[:cut])
            handler.wfile.flush()
            handler.close_connection = True
            return
        handler.serve(good)

    url = server.route("/flaky.h5ad", flaky)
    dest = tmp_path / "flaky.h5ad"
    dl.fetch("flaky", make_entry(url, sha256=sha(good)), dest, tmp_path / "lock.yaml", **FAST)
    ranges = [r[1] for r in server.requests_for("/flaky.h5ad")]
    assert ranges == [None, f"bytes={cut}-"]
    assert dest.read_bytes() == good


def test_server_ignoring_range_restarts_from_zero(server, good, tmp_path):
    url = server.route("/norange.h5ad", lambda h: h.serve(good, honour_range=False))
    dest = tmp_path / "norange.h5ad"
    dl.part_path(dest, url).write_bytes(b"stale partial bytes")
    dl.fetch("norange", make_entry(url, sha256=sha(good)), dest, tmp_path / "lock.yaml", **FAST)
    assert server.requests_for("/norange.h5ad")[0][1] == "bytes=19-"
    assert dest.read_bytes() == good


def test_complete_part_file_answered_416_is_used(server, good, tmp_path):
    url = server.route("/done.h5ad", lambda h: h.serve(good))
    dest = tmp_path / "done.h5ad"
    dl.part_path(dest, url).write_bytes(good)
    dl.fetch("done", make_entry(url, sha256=sha(good)), dest, tmp_path / "lock.yaml", **FAST)
    assert [r[1] for r in server.requests_for("/done.h5ad")] == [f"bytes={len(good)}-"]
    assert dest.read_bytes() == good


def test_403_with_html_body_is_an_http_error_without_retries(server, tmp_path):
    url = server.route("/forbidden", lambda h: h.reply(403, b"<html>Forbidden</html>", "text/html"))
    with pytest.raises(dl.HTTPStatusError) as err:
        dl.fetch("figshare", make_entry(url), tmp_path / "f.h5ad", tmp_path / "lock.yaml", **FAST)
    message = str(err.value)
    assert "403" in message and "text/html" in message and "<html>Forbidden" in message and url in message
    assert len(server.requests_for("/forbidden")) == 1
    assert no_leftovers(tmp_path, tmp_path / "f.h5ad")


def test_200_with_html_body_is_not_hdf5(server, tmp_path):
    url = server.route("/page", lambda h: h.reply(200, b"<!DOCTYPE html><html>login</html>", "text/html"))
    with pytest.raises(dl.NotHDF5Error) as err:
        dl.fetch("page", make_entry(url), tmp_path / "p.h5ad", tmp_path / "lock.yaml", **FAST)
    message = str(err.value)
    assert "HTTP 200" in message and "text/html" in message and "<!DOCTYPE html>" in message and "'page'" in message
    assert not (tmp_path / "p.h5ad").exists() and not list(tmp_path.glob("*.part"))
    assert not (tmp_path / "lock.yaml").exists() or "page" not in yaml.safe_load((tmp_path / "lock.yaml").read_text())


def test_empty_body_is_not_hdf5(server, tmp_path):
    url = server.route("/empty", lambda h: h.reply(200, b""))
    with pytest.raises(dl.NotHDF5Error, match="0 bytes received"):
        dl.fetch("empty", make_entry(url), tmp_path / "e.h5ad", tmp_path / "lock.yaml", **FAST)


def test_server_down_fails_after_retries(tmp_path):
    url = closed_port_url()
    with pytest.raises(dl.ServerUnreachableError) as err:
        dl.fetch("down", make_entry(url), tmp_path / "d.h5ad", tmp_path / "lock.yaml", retries=3, backoff=0.001)
    assert "4 attempts" in str(err.value) and url in str(err.value) and "'down'" in str(err.value)


def test_silent_server_times_out(server, tmp_path):
    url = server.route("/slow", lambda h: time.sleep(1.0))
    with pytest.raises(dl.ServerUnreachableError, match="2 attempts"):
        dl.fetch("slow", make_entry(url), tmp_path / "t.h5ad", tmp_path / "lock.yaml",
                 retries=1, backoff=0.001, timeout=0.2)


def test_5xx_is_retried_then_succeeds(server, good, tmp_path):
    calls = {"n": 0}

    def unstable(handler):
        calls["n"] += 1
        if calls["n"] < 3:
            handler.reply(503, b"busy", "text/plain")
        else:
            handler.serve(good)

    url = server.route("/unstable.h5ad", unstable)
    dl.fetch("unstable", make_entry(url), tmp_path / "u.h5ad", tmp_path / "lock.yaml", **FAST)
    assert calls["n"] == 3 and (tmp_path / "u.h5ad").read_bytes() == good


def test_persistent_5xx_is_an_http_error(server, tmp_path):
    url = server.route("/broken", lambda h: h.reply(500, b"oops", "text/plain"))
    with pytest.raises(dl.HTTPStatusError, match="HTTP 500.*after 3 attempts"):
        dl.fetch("broken", make_entry(url), tmp_path / "b.h5ad", tmp_path / "lock.yaml", **FAST)


def test_mirror_used_when_primary_fails(server, good, tmp_path):
    primary = server.route("/gone", lambda h: h.reply(403, b"<html>no</html>", "text/html"))
    mirror = server.route("/mirror.h5ad", lambda h: h.serve(good))
    dest = tmp_path / "m.h5ad"
    dl.fetch("mirrored", make_entry(primary, mirrors=[mirror]), dest, tmp_path / "lock.yaml", **FAST)
    assert dest.read_bytes() == good
    assert list(yaml.safe_load((tmp_path / "lock.yaml").read_text())["mirrored"]) == [mirror]


def test_every_source_failing_lists_all(server, tmp_path):
    primary = server.route("/gone", lambda h: h.reply(404, b"", "text/html"))
    mirror = server.route("/gone2", lambda h: h.reply(403, b"", "text/html"))
    with pytest.raises(dl.HTTPStatusError) as err:
        dl.fetch("both", make_entry(primary, mirrors=[mirror]), tmp_path / "x.h5ad", tmp_path / "lock.yaml", **FAST)
    assert primary in str(err.value) and mirror in str(err.value) and "every source failed" in str(err.value)


def test_lock_file_records_then_verifies(server, good, tmp_path):
    payload = {"data": good}
    url = server.route("/changing.h5ad", lambda h: h.serve(payload["data"]))
    dest, lock = tmp_path / "c.h5ad", tmp_path / "lock.yaml"
    entry = make_entry(url)
    dl.fetch("changing", entry, dest, lock, **FAST)
    dl.fetch("changing", entry, dest, lock, **FAST)  # same bytes: verifies fine
    assert yaml.safe_load(lock.read_text())["changing"][url]["sha256"] == sha(good)

    payload["data"] = h5ad_bytes(tiny_adata(seed=1), tmp_path, "other")  # the server's file changed
    with pytest.raises(dl.ChecksumMismatchError) as err:
        dl.fetch("changing", entry, dest, lock, **FAST)
    assert f"recorded in {lock}" in str(err.value) and sha(good) in str(err.value)
    assert dest.read_bytes() == good  # the earlier good file is untouched


def test_zip_member_is_extracted(server, good, tmp_path):
    archive = zip_bytes("data/macaque_raw.h5ad", good)
    url = server.route("/macaque_raw.zip", lambda h: h.serve(archive))
    dest = tmp_path / "macaque.h5ad"
    entry = make_entry(url, format="zip:macaque_raw.h5ad", sha256=sha(archive), size=len(archive))
    dl.fetch("macaque", entry, dest, tmp_path / "lock.yaml", **FAST)
    assert dest.read_bytes() == good
    assert not list(tmp_path.glob("*.part"))


def test_zip_without_the_member_and_html_instead_of_zip(server, good, tmp_path):
    archive = zip_bytes("other.h5ad", good)
    url = server.route("/wrong.zip", lambda h: h.serve(archive))
    with pytest.raises(dl.PayloadContentError, match="macaque_raw.h5ad"):
        dl.fetch("m", make_entry(url, format="zip:macaque_raw.h5ad"), tmp_path / "m.h5ad", tmp_path / "l.yaml", **FAST)
    html = server.route("/html.zip", lambda h: h.reply(200, b"<html>", "text/html"))
    with pytest.raises(dl.NotZipError):
        dl.fetch("m2", make_entry(html, format="zip:macaque_raw.h5ad"), tmp_path / "n.h5ad", tmp_path / "l.yaml", **FAST)
    assert not (tmp_path / "m.h5ad").exists() and not (tmp_path / "n.h5ad").exists()


def test_parts_of_10x_tarballs_are_concatenated_with_batches(server, tmp_path):
    rng = np.random.default_rng(3)
    genes = ["CD3E", "MALAT1", "ACTB", "GAPDH"]
    counts = {"293t": rng.poisson(3, (5, 4)), "jurkat": rng.poisson(3, (7, 4))}
    urls = {}
    for batch, matrix in counts.items():
        barcodes = [f"AAAC{i:04d}-1" for i in range(len(matrix))]  # same barcodes in both parts
        payload = tenx_mtx_tar_gz(matrix, barcodes, genes)
        urls[batch] = server.route(f"/{batch}.tar.gz", lambda h, p=payload: h.serve(p))
    entry = make_entry(None, format="10x_mtx_tar_gz", batch_key="batch", label_key=None,
                       parts=[{"url": urls[b], "batch": b} for b in counts])
    dest = tmp_path / "jurkat_293t.h5ad"
    dl.fetch("jurkat_293t", entry, dest, tmp_path / "lock.yaml", **FAST)
    adata = ad.read_h5ad(dest)
    assert adata.n_obs == 12 and list(adata.var_names) == genes and adata.obs_names.is_unique
    assert adata.obs["batch"].value_counts().to_dict() == {"293t": 5, "jurkat": 7}
    dense = adata.X.toarray() if sp.issparse(adata.X) else adata.X
    np.testing.assert_array_equal(dense, np.vstack([counts["293t"], counts["jurkat"]]))
    assert set(yaml.safe_load((tmp_path / "lock.yaml").read_text())["jurkat_293t"]) == set(urls.values())


def test_10x_h5_is_converted_to_h5ad(server, tmp_path):
    counts = np.random.default_rng(4).poisson(2, (9, 5))
    genes = ["A", "B", "C", "D", "E"]
    payload = tenx_h5(counts, genes, tmp_path / "source.h5")
    url = server.route("/pbmc.h5", lambda h: h.serve(payload))
    entry = make_entry(url, format="10x_h5", batch_key=None, label_key=None)
    dest = tmp_path / "pbmc10k_rna.h5ad"
    dl.fetch("pbmc10k_rna", entry, dest, tmp_path / "lock.yaml", **FAST)
    adata = ad.read_h5ad(dest)
    assert list(adata.var_names) == genes and adata.n_obs == 9
    np.testing.assert_array_equal(adata.X.toarray(), counts)
    assert not list(tmp_path.glob("*.part"))


def test_derive_drops_matching_cells_and_fetches_source(server, good, tmp_path):
    url = server.route("/bct.h5ad", lambda h: h.serve(good))
    registry = {"bct": make_entry(url)}
    entry = make_entry(None, derive={"from": "bct", "drop": {"BATCH": "b", "celltype": "x"}})
    dest = tmp_path / "raw" / "bct_del.h5ad"
    dl.fetch("bct_del", entry, dest, tmp_path / "lock.yaml", registry=registry, **FAST)
    source, derived = tiny_adata(), ad.read_h5ad(dest)
    removed = (source.obs["BATCH"] == "b") & (source.obs["celltype"] == "x")
    assert (tmp_path / "raw" / "bct.h5ad").read_bytes() == good
    assert derived.n_obs == source.n_obs - int(removed.sum()) and removed.sum() > 0
    assert not ((derived.obs["BATCH"] == "b") & (derived.obs["celltype"] == "x")).any()
    bad = make_entry(None, derive={"from": "bct", "drop": {"BATCH": "zzz"}})
    with pytest.raises(dl.PayloadContentError, match="matched no cell"):
        dl.fetch("bct_none", bad, tmp_path / "raw" / "none.h5ad", tmp_path / "lock.yaml", **FAST)


def test_bundled_file_is_copied_without_network(tmp_path):
    registry = reg.load_registry(REGISTRY)
    entry = dict(registry["pbmc68k_reduced"], url=closed_port_url())
    dest = tmp_path / "pbmc68k_reduced.h5ad"
    dl.fetch("pbmc68k_reduced", entry, dest, tmp_path / "lock.yaml", retries=0, backoff=0.001)
    assert dl.sha256_of(dest) == entry["sha256"]


# ----------------------------------------------------------------------------- registry tests


def test_registry_entries_validate_and_urls_are_http():
    registry = reg.load_registry(REGISTRY)
    expected = {"pancreas", "lung_atlas", "immune_human", "macaque_retina", "bct", "bct_del", "heart",
                "mouse_human_pancreas_10k", "jurkat_293t", "hca_immune_census", "pbmc10k_rna", "pbmc68k_reduced"}
    assert expected <= set(registry)
    for name, entry in registry.items():
        urls = [entry["url"], *entry["mirrors"]] if entry["url"] else []
        for part in entry["parts"] or []:
            urls += [part["url"], *part["mirrors"]]
        assert urls or entry["derive"], name
        assert all(u.startswith(("https://", "http://")) for u in urls), name
    assert registry["bct_del"]["derive"]["from"] == "bct"
    assert registry["macaque_retina"]["size"] == 58586260


VALID = make_entry("https://example.org/x.h5ad")


@pytest.mark.parametrize(("change", "field", "problem"), [
    ({"url": "ftp://example.org/x.h5ad"}, "url", "http"),
    ({"sha256": "ABC"}, "sha256", "64 lowercase hex"),
    ({"format": "loom"}, "format", "zip:<member>"),
    ({"counts": "raw"}, "counts", "layers/<name>"),
    ({"counts_integer": "yes"}, "counts_integer", "true or false"),
    ({"sizes": 3}, "sizes", "unknown field"),
    ({"derive": {"from": "nothere", "drop": {"BATCH": "spk"}}, "url": None}, "derive.from", "names no entry"),
    ({"parts": [{"url": "https://e.org/a.h5", "batch": "a"}]}, None, "exactly one of url, parts, derive"),
    ({"parts": [{"url": "https://e.org/a.h5"}], "url": None}, "parts[0].batch", "is missing"),
])
def test_registry_validation_names_entry_and_field(tmp_path, change, field, problem):
    entry = copy.deepcopy(VALID)
    entry.update(change)
    path = tmp_path / "datasets.yaml"
    path.write_text(yaml.safe_dump({"datasets": {"ok": VALID, "broken": entry}}))
    with pytest.raises(reg.RegistryError) as err:
        reg.load_registry(path)
    message = str(err.value)
    assert "entry 'broken'" in message and problem in message and str(path) in message
    if field:
        assert f"field '{field}'" in message


def test_registry_missing_field(tmp_path):
    entry = copy.deepcopy(VALID)
    del entry["label_key"]
    path = tmp_path / "datasets.yaml"
    path.write_text(yaml.safe_dump({"datasets": {"lung": entry}}))
    with pytest.raises(reg.RegistryError, match="entry 'lung', field 'label_key': is missing"):
        reg.load_registry(path)
