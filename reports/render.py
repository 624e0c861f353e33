"""Render every figure of ``reports.figures.FIGURES`` from the tables to PNG + PDF.

A figure whose tables are absent or hold no data for it is reported as "no data"; a figure
that raises is reported as an error with its message (the rest of the report still renders).
"""

from __future__ import annotations

import inspect
import os
import time
import traceback
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # headless: rules and tests have no display

import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from reports.figures import FIGURES  # noqa: E402
from reports.tables import TABLE_FILES  # noqa: E402

PNG_DPI = 150


@dataclass
class FigureOutcome:
    """What happened to one figure: status ok | no data | error."""

    name: str
    description: str
    status: str
    png: Path | None = None
    pdf: Path | None = None
    message: str = ""
    seconds: float = 0.0


def call_with_tables(fn: Callable, tables: dict[str, pd.DataFrame]):
    """Call a figure function with the tables its parameters are named after.

    A required table that is absent gives None (no data); optional ones default to None.
    """
    kwargs = {}
    for name, param in inspect.signature(fn).parameters.items():
        if name not in TABLE_FILES:
            continue
        if name in tables:
            kwargs[name] = tables[name]
        elif param.default is inspect.Parameter.empty:
            return None
    return fn(**kwargs)


def save_atomic(fig, path: Path, **kwargs) -> None:
    """``fig.savefig`` to a temporary name beside ``path``, then rename (no half-written file)."""
    tmp = path.with_name(f".{path.stem}.tmp{os.getpid()}{path.suffix}")
    try:
        fig.savefig(tmp, **kwargs)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def save_plot(plot, out_dir: Path, name: str) -> tuple[Path, Path]:
    """Draw a ggplot once and save it as ``name.png`` (PNG_DPI) and ``name.pdf``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        # plotnine warns about rows it leaves out (NaN values); the figures handle them on purpose
        warnings.simplefilter("ignore")
        fig = plot.draw(show=False)
        try:
            png, pdf = out_dir / f"{name}.png", out_dir / f"{name}.pdf"
            save_atomic(fig, png, dpi=PNG_DPI)
            save_atomic(fig, pdf)
        finally:
            plt.close(fig)
    return png, pdf


def remove_stale(out_dir: Path, name: str) -> None:
    """Delete an old rendering of a figure that now has no data or fails (never show stale plots)."""
    for suffix in (".png", ".pdf"):
        (out_dir / f"{name}{suffix}").unlink(missing_ok=True)


def render_figures(tables: dict[str, pd.DataFrame], out_dir: str | Path,
                   names: list[str] | None = None) -> list[FigureOutcome]:
    """Render the figures ``names`` (default: all of FIGURES) into ``out_dir``."""
    out_dir = Path(out_dir)
    outcomes = []
    for name in names or list(FIGURES):
        fn, description = FIGURES[name]
        t0 = time.perf_counter()
        try:
            plot = call_with_tables(fn, tables)
            if plot is None:
                remove_stale(out_dir, name)
                outcome = FigureOutcome(name, description, "no data", message=f"no data for {description}")
            else:
                png, pdf = save_plot(plot, out_dir, name)
                outcome = FigureOutcome(name, description, "ok", png, pdf)
        except Exception as exc:  # noqa: BLE001 - one broken figure must not sink the report
            remove_stale(out_dir, name)
            detail = traceback.format_exc(limit=3)
            outcome = FigureOutcome(name, description, "error", message=f"{type(exc).__name__}: {exc}\n{detail}")
        outcome.seconds = round(time.perf_counter() - t0, 2)
        outcomes.append(outcome)
    return outcomes
