"""The HTML report: one self-contained page (figures embedded as base64 PNG, tables sortable
with a few lines of vanilla JavaScript, no external resources), written atomically."""

from __future__ import annotations

import base64
import html
import json
import math
import os
import platform
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

import pandas as pd

from reports.figure_helpers import is_empty
from reports.label_transfer import label_transfer_section
from reports.novel_type import novel_section_html
from reports.render import FigureOutcome
from reports.search import search_nav, search_section
from reports.selection import selection_html
from reports.trust import (
    TRUST_CSS,
    claims_section,
    claims_summary,
    convergence_banner,
    dataset_strengths,
    datasets_section,
    latent_scale_banner,
    reference_notes,
    unlabelled_note,
)

MAX_TABLE_ROWS = 2000  # beyond this a table is cut (the TSV in the tables folder is complete)
REPORT_PACKAGES = ["pandas", "numpy", "plotnine", "matplotlib", "scanpy", "umap-learn"]

# (table name, heading, shown open) in page order
TABLE_SECTIONS = [
    ("summary", "Summary over datasets (summary.tsv)", True),
    ("best", "Best setting per dataset and method (best.tsv)", True),
    ("runs", "All runs (runs.tsv)", False),
    ("scores", "Scores per run (scores.tsv)", False),
    ("scaling", "Scaling study (scaling.tsv)", False),
    ("claim_tests", "Comparisons behind the claims (claim_tests.tsv)", False),
    ("metrics", "Metrics, long format (metrics.tsv)", False),
]

SORT_JS = """
document.querySelectorAll("table.sortable").forEach(function (table) {
  table.querySelectorAll("th").forEach(function (th, col) {
    th.addEventListener("click", function () {
      var body = table.tBodies[0];
      var asc = th.getAttribute("data-order") !== "asc";
      table.querySelectorAll("th").forEach(function (h) { h.removeAttribute("data-order"); });
      th.setAttribute("data-order", asc ? "asc" : "desc");
      var rows = Array.prototype.slice.call(body.rows);
      rows.sort(function (a, b) {
        var x = a.cells[col].textContent, y = b.cells[col].textContent;
        var nx = parseFloat(x), ny = parseFloat(y);
        var cmp = (!isNaN(nx) && !isNaN(ny)) ? nx - ny : x.localeCompare(y);
        return asc ? cmp : -cmp;
      });
      rows.forEach(function (r) { body.appendChild(r); });
    });
  });
});
"""

CSS = """
body { font-family: system-ui, sans-serif; margin: 1.5em auto; padding: 0 1em; max-width: 1400px;
       box-sizing: border-box; color: #222; }
nav a { margin-right: 1em; }
table { border-collapse: collapse; font-size: 12px; margin: 0.5em 0; }
th, td { border: 1px solid #ccc; padding: 2px 6px; text-align: left; }
th { background: #eee; cursor: pointer; position: sticky; top: 0; }
th[data-order=asc]::after { content: " \\25B2"; } th[data-order=desc]::after { content: " \\25BC"; }
tr.failed td { background: #fde8e8; }
.scroll { max-height: 480px; overflow: auto; }
figure { margin: 1em 0 2em 0; } figure img { max-width: 100%; box-sizing: border-box; border: 1px solid #ddd; }
.nodata { color: #777; font-style: italic; } .error { color: #b00; white-space: pre-wrap; }
pre { background: #f6f6f6; padding: 0.8em; overflow: auto; max-height: 480px; }
"""


def format_cell(value: Any) -> str:
    """Table cell text: floats with 4 significant digits, missing values empty."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def format_seconds(seconds: float | None) -> str:
    """'1 h 02 min 05 s' style wall-clock text ('not recorded' when None)."""
    if seconds is None or (isinstance(seconds, float) and math.isnan(seconds)):
        return "not recorded"
    total = int(round(seconds))
    h, rest = divmod(total, 3600)
    m, s = divmod(rest, 60)
    return (f"{h} h {m:02d} min {s:02d} s" if h else f"{m} min {s:02d} s" if m else f"{s} s") + \
        f" ({seconds:.1f} s)"


def table_html(df: pd.DataFrame, table_id: str, max_rows: int = MAX_TABLE_ROWS) -> str:
    """A sortable HTML table of ``df`` (first ``max_rows`` rows; failed rows highlighted)."""
    shown = df.head(max_rows)
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in shown.columns)
    rows = []
    status = shown["status"].astype(str).tolist() if "status" in shown.columns else [""] * len(shown)
    for st, row in zip(status, shown.itertuples(index=False)):
        cls = ' class="failed"' if st == "failed" else ""
        cells = "".join(f"<td>{html.escape(format_cell(v))}</td>" for v in row)
        rows.append(f"<tr{cls}>{cells}</tr>")
    note = (f'<p class="nodata">showing {max_rows} of {len(df)} rows; the TSV file has all</p>'
            if len(df) > max_rows else "")
    return (f'{note}<div class="scroll"><table class="sortable" id="{html.escape(table_id)}">'
            f'<thead><tr>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table></div>')


def figure_html(outcome: FigureOutcome) -> str:
    """A figure block: the embedded PNG, or the 'no data' / error note."""
    title = f"<h3>{html.escape(outcome.description)}</h3>"
    if outcome.status == "ok" and outcome.png is not None:
        data = base64.b64encode(Path(outcome.png).read_bytes()).decode("ascii")
        files = f"{outcome.name}.png / {outcome.name}.pdf"
        return (f'<figure id="fig-{outcome.name}">{title}<img alt="{html.escape(outcome.name)}" '
                f'src="data:image/png;base64,{data}"><figcaption>{html.escape(files)}</figcaption></figure>')
    if outcome.status == "no data":
        return f'<figure id="fig-{outcome.name}">{title}<p class="nodata">{html.escape(outcome.message)}</p></figure>'
    return (f'<figure id="fig-{outcome.name}">{title}<p class="error">figure failed: '
            f'{html.escape(outcome.message)}</p></figure>')


def failed_runs_html(tables: dict[str, pd.DataFrame]) -> str:
    """The 'Failed runs' section body: every failed run (runs.tsv, scaling.tsv) and its error."""
    parts = []
    runs = tables.get("runs")
    if runs is None:
        parts.append('<p class="nodata">no data for failed runs (runs.tsv not available)</p>')
    else:
        failed = runs[runs["status"] == "failed"]
        cols = [c for c in ["dataset", "method", "setting", "seed", "label_missing", "device", "wall_s", "error",
                            "run_path"] if c in failed.columns]
        if failed.empty:
            parts.append(f"<p>No failed runs among {len(runs)} runs.</p>")
        else:
            parts.append(f"<p>{len(failed)} of {len(runs)} runs failed.</p>")
            parts.append(table_html(failed[cols], "failed-runs"))
    scaling = tables.get("scaling")
    if scaling is not None and (scaling["status"] == "failed").any():
        failed = scaling[scaling["status"] == "failed"]
        cols = [c for c in ["dataset", "method", "n_cells", "device", "error"] if c in failed.columns]
        parts.append(f"<h3>Scaling study: {len(failed)} failed run(s)</h3>")
        parts.append(table_html(failed[cols], "failed-scaling"))
    return "\n".join(parts)


def read_run_record(path: str | Path) -> dict[str, Any] | None:
    """The run record (``uns["run_json"]``) of a run file, or None when unreadable."""
    import h5py

    try:
        with h5py.File(path, "r") as f:
            raw = f["uns"]["run_json"][()]
        return json.loads(raw.decode() if isinstance(raw, bytes) else raw)
    except (OSError, KeyError, ValueError):
        return None


def collect_versions(runs: pd.DataFrame | None, extra: dict[str, str] | None = None,
                     max_files: int = 200) -> dict[str, str]:
    """package -> version(s): from the run records of the runs (distinct values joined), the
    versions passed in, and the reporting environment (``report:`` prefix)."""
    found: dict[str, set[str]] = {}
    commits: set[str] = set()
    if runs is not None and "run_path" in runs.columns:
        for path in runs["run_path"].dropna().unique()[:max_files]:
            record = read_run_record(path) if Path(path).exists() else None
            if not record:
                continue
            for pkg, ver in (record.get("versions") or {}).items():
                found.setdefault(pkg, set()).add(str(ver))
            if record.get("git_commit"):
                commits.add(str(record["git_commit"]))
    out = {pkg: ", ".join(sorted(v)) for pkg, v in sorted(found.items())}
    if commits:
        out["git commit of runs"] = ", ".join(sorted(commits))
    out.update({str(k): str(v) for k, v in (extra or {}).items()})
    out["report: python"] = platform.python_version()
    for pkg in REPORT_PACKAGES:
        try:
            out[f"report: {pkg}"] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            pass
    return out


def study_numbers(tables: dict[str, pd.DataFrame], study_wall_s: float | None) -> list[tuple[str, str]]:
    """(label, value) lines for the header: runs, failures, wall-clock, summed run time."""
    lines = [("study wall-clock", format_seconds(study_wall_s))]
    runs = tables.get("runs")
    if runs is not None:
        n_failed = int((runs["status"] == "failed").sum())
        lines.append(("runs", f"{len(runs)} ({n_failed} failed)"))
        if "wall_s" in runs.columns:
            lines.append(("total of run times (sum of wall_s)", format_seconds(float(runs["wall_s"].sum()))))
        for key, what in (("dataset", "datasets"), ("method", "methods")):
            lines.append((what, ", ".join(sorted(runs[key].dropna().unique()))))
    lines += [(f"dataset {d}", text) for d, text in dataset_strengths(tables.get("batch_strength")).items()]
    return lines


OPTIONAL_FIGURES = ("label_transfer", "novel_type", "search_trajectory")  # only studies that run those tasks
OWN_SECTION_FIGURES = ("search_trajectory", "novel_type")

def build_html(tables: dict[str, pd.DataFrame], outcomes: list[FigureOutcome], config: Any,
               versions: dict[str, str], study_wall_s: float | None = None,
               title: str = "Single-cell integration benchmark", notes: list[str] | None = None) -> str:
    """The whole report page as a string."""
    generated = datetime.now(timezone.utc).isoformat(timespec="seconds")
    header = "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>"
                     for k, v in study_numbers(tables, study_wall_s))
    def figures_named(name: str) -> str:
        return "".join(figure_html(o) for o in outcomes if o.name == name)

    # the search's and the novel type's figures are shown in their own sections, beside their tables;
    # the optional experiments' figures have no data in every study that does not run them: no card, no note
    figures = "\n".join(figure_html(o) for o in outcomes if o.name not in OWN_SECTION_FIGURES
                        and not (o.name in OPTIONAL_FIGURES and o.status == "no data"))
    search = search_section(tables.get("search"), figures_named("search_trajectory"), table_html)
    novel_nav, novel = "", ""
    if not is_empty(tables.get("novel_type")):  # only studies that held a cell type out
        novel_nav = '<a href="#novel">Novel type</a>'
        novel = ('<section id="novel"><h2>Held-out novel cell type</h2>'
                 + novel_section_html(tables["novel_type"], table_html) + figures_named("novel_type") + "</section>")
    no_data = [o.description for o in outcomes if o.status == "no data" and o.name not in OPTIONAL_FIGURES]
    table_parts = []
    for name, heading, is_open in TABLE_SECTIONS:
        body = (table_html(tables[name], f"table-{name}") if name in tables
                else f'<p class="nodata">no data for {html.escape(name)} ({name}.tsv not available)</p>')
        if name == "best":  # which score chose each best setting (criterion column)
            body = selection_html(tables.get("best")) + body
        table_parts.append(f'<details id="tbl-{name}"{" open" if is_open else ""}>'
                           f"<summary><b>{html.escape(heading)}</b></summary>{body}</details>")
    version_rows = "".join(f"<tr><td>{html.escape(k)}</td><td>{html.escape(v)}</td></tr>" for k, v in versions.items())
    notes_html = "".join(f"<li>{html.escape(n)}</li>" for n in (notes or []) + [f"no data for {d}" for d in no_data])
    config_text = json.dumps(config, indent=2, sort_keys=True, default=str)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>{CSS}{TRUST_CSS}</style></head>
<body>
<h1>{html.escape(title)}</h1>
<p>Generated {generated}.</p>
<nav><a href="#study">Study</a><a href="#datasets">Datasets</a><a href="#claims">Claims</a>
<a href="#figures">Figures</a>{search_nav(tables.get("search"))}{novel_nav}<a href="#failed">Failed runs</a>
<a href="#tables">Tables</a><a href="#config">Config</a><a href="#versions">Versions</a></nav>
<section id="study"><h2>Study</h2><table>{header}</table>
{convergence_banner(tables.get("runs"))}{latent_scale_banner(tables.get("runs"))}{claims_summary(tables.get("claims"))}{reference_notes(tables.get("runs"))}
{f"<ul>{notes_html}</ul>" if notes_html else ""}</section>
<section id="datasets"><h2>Datasets: batch-effect strength before integration</h2>
{unlabelled_note(tables.get("runs"))}{datasets_section(tables.get("batch_strength"))}</section>
<section id="claims"><h2>The papers' claims, checked on this study</h2>
{claims_section(tables.get("claims"))}</section>
{label_transfer_section(tables.get("label_transfer"))}
<section id="figures"><h2>Figures</h2>
{figures}</section>
{search}{novel}
<section id="failed"><h2>Failed runs</h2>
{failed_runs_html(tables)}</section>
<section id="tables"><h2>Tables</h2><p>Click a column header to sort.</p>
{"".join(table_parts)}</section>
<section id="config"><h2>Config</h2><pre>{html.escape(config_text, quote=False)}</pre></section>
<section id="versions"><h2>Versions</h2><table class="sortable" id="table-versions">
<thead><tr><th>package</th><th>version(s)</th></tr></thead><tbody>{version_rows}</tbody></table></section>
<script>{SORT_JS}</script>
</body></html>
"""


def write_html(path: str | Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically (temporary name in the same folder, then rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
