"""Command line of the reports stage.

    python -m reports render --tables DIR --out-dir FIGDIR --html REPORT.html --config CONFIG.json
                             [--study-wall-s S] [--umap-max-cells N] [--umap COORDS.tsv.gz]
                             [--versions VERSIONS.json] [--title TITLE]
    python -m reports umap --tables DIR --out COORDS.tsv.gz [--max-cells N] [--seed S]
    python -m reports claims-md --tables DIR --figures FIGDIR --out CLAIMS.md [--command CMD]

``render`` reads every table that exists in DIR, renders every figure it can (PNG + PDF in
FIGDIR, names from ``reports.figures.FIGURES``) and writes the self-contained HTML report.
UMAP coordinates come from ``--umap``, else DIR/umap.tsv.gz, else they are computed here
from the representative runs of best.tsv (when their run files exist).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any


def read_config(path: str | None) -> Any:
    """The study config (JSON or YAML file) to print in the report; {} when not given."""
    if not path:
        return {}
    p = Path(path)
    if not p.exists():
        raise SystemExit(f"--config: file {p} does not exist")
    import yaml

    try:
        return yaml.safe_load(p.read_text()) or {}  # YAML is a superset of JSON
    except yaml.YAMLError as exc:
        raise SystemExit(f"--config: {p} is neither JSON nor YAML: {exc}") from None


def read_versions(path: str | None) -> dict[str, str]:
    """Extra package versions to show (a JSON object file), {} when not given."""
    if not path:
        return {}
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise SystemExit(f"--versions: cannot read JSON object from {path}: {exc}") from None
    if not isinstance(data, dict):
        raise SystemExit(f"--versions: {path} must hold a JSON object (package -> version)")
    return {str(k): str(v) for k, v in data.items()}


def umap_for_report(tables: dict, tables_dir: Path, umap_path: str | None, max_cells: int,
                    seed: int, workers: int = 1) -> tuple[Any, str | None]:
    """The UMAP coordinates table and, when they could not be had, a note why."""
    from reports.tables import read_table

    if umap_path:
        return read_table(umap_path, "umap"), None
    if "umap" in tables:
        return tables["umap"], None
    if "best" not in tables:
        return None, "UMAP: no best.tsv, no representative runs"
    from reports.umap import umap_table

    try:
        coords = umap_table(tables["best"], tables.get("runs"), max_cells=max_cells, seed=seed,
                            base_dirs=[tables_dir, tables_dir.parent], workers=workers)
    except Exception as exc:  # noqa: BLE001 - the report still renders without UMAPs
        return None, f"UMAP computation failed: {type(exc).__name__}: {exc}"
    if (coords["status"] == "ok").any():
        return coords, None
    # no run file readable at all (e.g. tables copied without runs): no UMAP rather than all "failed"
    return None, "UMAP: no representative run file could be read"


def wall_since_start(invocations: str | None) -> float | None:
    """Seconds since the latest workflow start recorded in ``invocations.log`` (None if absent)."""
    from datetime import datetime, timezone

    if not invocations or not Path(invocations).exists():
        return None
    starts = [line.split("\t", 1)[1].strip() for line in Path(invocations).read_text().splitlines()
              if line.startswith("start\t")]
    if not starts:
        return None
    return (datetime.now(timezone.utc) - datetime.fromisoformat(starts[-1])).total_seconds()


def cmd_render(args: argparse.Namespace) -> int:
    from reports.html import build_html, collect_versions, write_html
    from reports.render import render_figures
    from reports.tables import read_tables

    t0 = time.perf_counter()
    tables_dir = Path(args.tables)
    tables = read_tables(tables_dir)
    config = read_config(args.config)
    notes = []
    if not tables:
        notes.append(f"no tables found in {tables_dir}")
    umap, note = umap_for_report(tables, tables_dir, args.umap, args.umap_max_cells, args.seed,
                                 args.umap_workers)
    if umap is not None:
        tables["umap"] = umap
    if note:
        notes.append(note)
    outcomes = render_figures(tables, args.out_dir)
    versions = collect_versions(tables.get("runs"), read_versions(args.versions))
    wall = args.study_wall_s if args.study_wall_s is not None else wall_since_start(args.invocations)
    page = build_html(tables, outcomes, config, versions, study_wall_s=wall, title=args.title,
                      notes=notes)
    write_html(args.html, page)
    for o in outcomes:
        print(f"{o.name}: {o.status} ({o.seconds} s){' - ' + o.message.splitlines()[0] if o.message else ''}",
              file=sys.stderr)
    print(f"report written to {args.html} in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    return 0


# the figures behind the claims, in the order the results page shows them
CLAIM_FIGURES = ["claims", "sysvi_nmi_ilisi", "sysvi_sweep", "summary_table", "bio_batch", "missing_labels",
                 "convergence"]


def git_commit() -> str:
    """The repository's commit ('abc1234', '+ local changes' when the tree differs), or 'unknown'."""
    import subprocess

    repo = Path(__file__).resolve().parent.parent
    try:
        head = subprocess.run(["git", "-C", str(repo), "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, timeout=30, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(repo), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=30).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return head + (" + local changes" if dirty else "")


def cmd_claims_md(args: argparse.Namespace) -> int:
    """The claims page (results.md) with the figures behind it copied beside it."""
    import os
    import platform
    import shutil
    from datetime import datetime, timezone

    from reports.figures_claims import claims_markdown
    from reports.tables import read_tables

    tables = read_tables(Path(args.tables))
    if "claims" not in tables:
        raise SystemExit(f"claims-md: {Path(args.tables) / 'claims.tsv'} does not exist (run the claims step first)")
    out = Path(args.out)
    fig_dir = out.parent / f"{out.stem}_figures"
    fig_dir.mkdir(parents=True, exist_ok=True)
    figures = []
    for name in CLAIM_FIGURES:
        png = Path(args.figures) / f"{name}.png"
        if png.exists():
            shutil.copyfile(png, fig_dir / png.name)
            figures.append(f"{fig_dir.name}/{png.name}")
    header = "\n".join([
        f"# {args.title}", "",
        f"Made by the pipeline: `{args.command}` at commit `{git_commit()}`, "
        f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC, on {platform.machine()} with {os.cpu_count()} cores. "
        "The report (report.html) and tables/ of the same study hold every number and run.",
        "Each row quotes its paper; `selection` names the setting choice, `rule` the test; a verdict needs 3 seeds "
        "per side (two-sided Welch or TOST with margin 0.05, two-stage Benjamini-Hochberg per dataset x metric, "
        "adjusted p < 0.1)."])
    import pandas as pd

    text = claims_markdown(tables["claims"], tables.get("claim_tests", pd.DataFrame()), header, figures)
    tmp = out.with_suffix(".tmp")
    tmp.write_text(text)
    tmp.replace(out)
    print(f"{out} written ({len(figures)} figures)", file=sys.stderr)
    return 0


def cmd_umap(args: argparse.Namespace) -> int:
    from reports.tables import read_tables
    from reports.umap import umap_table, write_table

    tables_dir = Path(args.tables)
    tables = read_tables(tables_dir)
    if "best" not in tables:
        raise SystemExit(f"umap: {tables_dir / 'best.tsv'} does not exist")
    coords = umap_table(tables["best"], tables.get("runs"), max_cells=args.max_cells, seed=args.seed,
                        base_dirs=[tables_dir, tables_dir.parent])
    write_table(coords, args.out)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m reports", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    render = sub.add_parser("render", help="figures (PNG + PDF) and the HTML report from the tables")
    render.add_argument("--tables", required=True, help="folder with runs.tsv, best.tsv, ... (any subset)")
    render.add_argument("--out-dir", required=True, help="folder for the figures")
    render.add_argument("--html", required=True, help="report file to write")
    render.add_argument("--config", help="config used (JSON or YAML), shown in the report")
    render.add_argument("--study-wall-s", type=float, default=None, help="wall-clock of the whole study (s)")
    render.add_argument("--invocations", help="the workflow's invocations.log: wall-clock since the last start")
    render.add_argument("--umap-max-cells", type=int, default=5000, help="cells per UMAP (subsampled)")
    render.add_argument("--umap", help="precomputed UMAP coordinates (python -m reports umap)")
    render.add_argument("--umap-workers", type=int, default=1, help="processes computing the UMAPs")
    render.add_argument("--versions", help="JSON object of extra package versions to list")
    render.add_argument("--seed", type=int, default=0, help="seed of UMAP subsampling and layout")
    render.add_argument("--title", default="Single-cell integration benchmark")
    render.set_defaults(func=cmd_render)
    umap = sub.add_parser("umap", help="UMAP coordinates of the representative runs of best.tsv")
    umap.add_argument("--tables", required=True, help="folder with best.tsv (and runs.tsv)")
    umap.add_argument("--out", required=True, help="coordinates table to write (.tsv or .tsv.gz)")
    umap.add_argument("--max-cells", type=int, default=5000)
    umap.add_argument("--seed", type=int, default=0)
    umap.set_defaults(func=cmd_umap)
    md = sub.add_parser("claims-md", help="the claims page (Markdown) with the figures behind it")
    md.add_argument("--tables", required=True, help="folder with claims.tsv and claim_tests.tsv")
    md.add_argument("--figures", required=True, help="the report's figure folder")
    md.add_argument("--out", required=True, help="Markdown file to write; figures go to <stem>_figures/ beside it")
    md.add_argument("--command", default="snakemake -s workflow/Snakefile", help="the command that made the study")
    md.add_argument("--title", default="The papers' claims, tested")
    md.set_defaults(func=cmd_claims_md)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (FileNotFoundError, ValueError) as exc:  # bad input: one clear line, no traceback
        raise SystemExit(f"python -m reports {args.command}: {exc}") from None
