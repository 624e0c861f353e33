"""The HTML report opens in headless Chromium: it renders (non-blank screenshot), its
JavaScript raises no error, and the table sorting works. Skipped without chromium."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import pytest

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed")
# console errors Chromium logs with --enable-logging=stderr
JS_ERROR_MARKERS = ("Uncaught", "SyntaxError", "ReferenceError", "TypeError")


def chromium(page: Path, *args: str, timeout: int = 120) -> subprocess.CompletedProcess:
    """Run headless Chromium on a local page with logging to stderr (no network, fresh profile)."""
    with tempfile.TemporaryDirectory() as profile:
        cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
               "--disable-background-networking", "--disable-component-update", "--disable-sync",
               f"--user-data-dir={profile}", "--enable-logging=stderr", "--v=0", *args, page.as_uri()]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)


def js_errors(log: str) -> list[str]:
    return [line for line in log.splitlines() if "CONSOLE" in line.upper() or "Uncaught" in line
            if any(m in line for m in JS_ERROR_MARKERS)]


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> Path:
    from test_reports import write_small_tables

    from reports.cli import main

    out = tmp_path_factory.mktemp("browser")
    tables = write_small_tables(out)
    assert main(["render", "--tables", str(tables), "--out-dir", str(out / "figures"),
                 "--html", str(out / "report.html"), "--study-wall-s", "12"]) == 0
    return out / "report.html"


def test_console_error_detection_works(tmp_path):
    """Negative control: a page with a JS error must be caught by the log check."""
    page = tmp_path / "broken.html"
    page.write_text("<html><body><p>x</p><script>notDefinedAnywhere();</script></body></html>")
    result = chromium(page, "--dump-dom")
    assert js_errors(result.stderr), result.stderr[-2000:]


def test_report_renders_without_js_errors(report, tmp_path):
    from PIL import Image

    shot = tmp_path / "shot.png"
    result = chromium(report, "--window-size=1400,2000", f"--screenshot={shot}")
    assert shot.exists(), result.stderr[-2000:]
    assert not js_errors(result.stderr), js_errors(result.stderr)
    pixels = np.asarray(Image.open(shot).convert("L"), dtype=float)
    assert pixels.shape[0] >= 1000 and pixels.std() > 10, "screenshot is blank"
    assert (pixels < 128).mean() > 0.01, "screenshot has almost no dark (text/figure) pixels"


def test_table_sort_script_sorts(report, tmp_path):
    """Clicking a header twice sorts the summary table by that column, descending."""
    page = tmp_path / "sorted.html"
    click = ("<script>var th = document.querySelectorAll('#table-summary th')[1]; th.click(); th.click();"
             "</script></body>")
    page.write_text(report.read_text().replace("</body>", click))
    result = chromium(page, "--dump-dom")
    assert not js_errors(result.stderr), js_errors(result.stderr)
    dom = result.stdout
    table = dom[dom.index('id="table-summary"'):]
    table = table[:table.index("</table>")]
    assert 'data-order="desc"' in table
    rows = table.split("<tr")[2:]
    overall = [float(r.split("<td>")[2].split("</td>")[0]) for r in rows]
    assert len(overall) >= 3 and overall == sorted(overall, reverse=True)
