"""Plan-time checks of a study config: each raises ``PlanError`` with one line naming the key,
the value and what to do, before any job runs.

The schema (workflow/schemas/config.schema.yaml) checks each value alone; these check what it
cannot: the output folder on this machine, metric names against the catalog, sizes against the
data (when known before the data exist: a simulation's ``n_cells``, a local file's header, or
the preprocessed file of an earlier run), and a device this machine does not have.
"""

from __future__ import annotations

import difflib
import os
from pathlib import Path

# parameters that count principal components or latent dimensions taken from the data
COMPONENT_PARAMS = ("n_comps", "n_pcs")


class PlanError(ValueError):
    """A config value that cannot work; the message names the key and what to do."""


def _close(name: str, known: list[str]) -> str:
    match = difflib.get_close_matches(name, known, n=1)
    return f" (did you mean '{match[0]}'?)" if match else ""


def check_out(out: str) -> str:
    """The study's output folder as the rules use it: ``~`` and ``$VARS`` expanded, no trailing
    '/'. Refuses a value that would write elsewhere than the user meant: empty or the filesystem
    root (``/data`` and ``/runs`` at the root), an unknown ``~user`` or unset variable (a folder
    literally named '~'), braces (Snakemake reads them as wildcards), control characters, spaces
    at either end, or a path through an existing file."""
    if not out.strip():
        raise PlanError("out is empty: name the study's output folder (e.g. out: results/mystudy)")
    if out != out.strip():
        raise PlanError(f"out: {out!r} starts or ends with a space: remove it (or the folder name would too)")
    if any(ord(c) < 32 for c in out):
        raise PlanError(f"out: {out!r} holds a control character (a newline or tab): write the folder name "
                        "on one line")
    if "{" in out or "}" in out:
        raise PlanError(f"out: {out!r} holds '{{' or '}}', which Snakemake reads as wildcards: name a folder "
                        "without braces")
    expanded = os.path.expandvars(os.path.expanduser(out))
    if expanded.startswith("~"):
        raise PlanError(f"out: {out!r}: no such user's home folder; write the path out (e.g. /home/me/results)")
    if "$" in expanded:
        raise PlanError(f"out: {out!r} names an environment variable that is not set: set it or write the "
                        "path out")
    folder = expanded.rstrip("/")
    if not folder:
        raise PlanError("out: '/' is the filesystem root: name a folder for the study (e.g. out: results/mystudy)")
    path = Path(folder)
    for above in [path, *path.parents]:
        if above.exists() or above.is_symlink():
            if not above.is_dir():
                what = "names" if above == path else "goes through"
                raise PlanError(f"out: {out!r} {what} the existing file {above}, not a folder: name a folder "
                                "(the study writes data/, runs/, tables/ and report.html in it)")
            break
    return folder


def check_metrics(metrics: dict) -> None:
    """``metrics.set``, ``metrics.bio`` / ``metrics.batch`` names and ``metrics.options`` (with
    ``n_neighbors``) against the catalog and the scorer's options; a typo was dropped from the
    composite without a word, or failed the study after its last run."""
    from metrics.catalog import ALL_METRICS, METRIC_SETS
    from metrics.score import resolve_options

    name = metrics.get("set") or "scib"
    if name not in METRIC_SETS:
        raise PlanError(f"metrics.set: '{name}' is not a metric set{_close(name, list(METRIC_SETS))}; "
                        f"known: {', '.join(sorted(METRIC_SETS))}")
    options = {**(metrics.get("options") or {}), "n_neighbors": metrics.get("n_neighbors", 90)}
    try:
        scored = resolve_options(options)["metrics"]
    except ValueError as exc:
        raise PlanError(f"metrics.options: {exc}") from None
    for key in ("bio", "batch"):
        for metric in metrics.get(key) or []:
            if metric not in ALL_METRICS:
                raise PlanError(f"metrics.{key}: '{metric}' is not a metric{_close(metric, ALL_METRICS)}; "
                                f"known: {', '.join(ALL_METRICS)}")
        chosen = metrics.get(key) or METRIC_SETS[name][key]
        missing = [m for m in chosen if m not in scored]
        if missing:
            raise PlanError(f"metrics.options.metrics leaves out {', '.join(missing)} of the {key} metrics, so "
                            f"they would be empty: add them there or drop metrics.options.metrics")


def check_neighbors(n_neighbors: int, dataset: str, cells: int | None, source: str) -> None:
    """The shared kNN graph needs more cells than ``metrics.n_neighbors``; with fewer, every graph
    metric silently used a different neighbourhood than the one configured."""
    if cells is not None and cells <= n_neighbors:
        raise PlanError(f"metrics.n_neighbors: {n_neighbors} needs more cells than that, but dataset '{dataset}' "
                        f"has {cells} ({source}): lower metrics.n_neighbors (at least 50) or use more cells")


def check_components(method: str, setting: str, params: dict, dataset: str, cells: int | None,
                     genes: int | None, source: str) -> None:
    """A setting's ``n_comps`` / ``n_pcs`` must be below the dataset's cells and genes (a PCA has
    at most min(cells, genes) - 1 components; the method would use fewer than configured)."""
    sizes = [n for n in (cells, genes) if n is not None]
    if not sizes:
        return
    most = min(sizes) - 1
    for key in COMPONENT_PARAMS:
        value = params.get(key)
        if isinstance(value, int) and not isinstance(value, bool) and value > most:
            raise PlanError(f"methods.{method} (setting {setting}): {key} {value} is more than the {most} "
                            f"components dataset '{dataset}' can give ({cells} cells from {source}, {genes} genes "
                            f"after HVG selection): use {key} of at most {most}")


def check_scaling_sizes(sizes: dict[str, list[int]], dataset: str, cells: int | None, source: str) -> None:
    """Scaling subsamples cannot hold more cells than their dataset."""
    if cells is None:
        return
    for method, values in sizes.items():
        too_big = [n for n in values if n > cells]
        if too_big:
            key = "scaling.sizes" if method == "" else f"scaling.method_sizes.{method}"
            raise PlanError(f"{key}: {too_big[0]} is more than the {cells} cells of dataset '{dataset}' ({source}): "
                            f"use sizes up to {cells}")


def check_device(device: str, local: bool, has_gpu: bool) -> None:
    """``device: cuda`` on a machine without a GPU ran CPU-only methods and recorded 'cuda'."""
    if device == "cuda" and local and not has_gpu:
        raise PlanError("device: cuda, but this machine shows no GPU (no /dev/nvidia*, or CUDA_VISIBLE_DEVICES "
                        "hides it): use device: auto (a GPU when there is one) or cpu")
