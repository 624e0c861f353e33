"""The search's objective and its table, ``tables/search.tsv``, from the scored runs.

Objective (fixed score): ``bio_weight * mean(raw bio metrics) + (1 - bio_weight) * mean(raw batch
metrics)``, scIB's unscaled overall, with the study's metric set and bio weight; a metric without
a value is skipped. It is not the ``overall`` of scores.tsv: that one is min-max scaled within
the method over the runs that exist, so it would move as the search adds runs. Every metric of
the catalog is higher-is-better, most in [0, 1]. A setting's score is the mean over its scored
seeds; a setting with no scored seed has none (a failed trial).

search.tsv, one row per setting of the grid and per search trial: dataset, method, arm (grid |
search), round (search only), trial (the run order: the grid in its order, the search by trial),
setting, the searched parameters as columns, n_seeds, n_failed, score, best_so_far (the best
score of the arm up to this trial), runs (runs so far in the arm: trials x seeds).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from metrics.aggregate import metrics_or_failure, run_identity, run_record_or_failure

COLUMNS = ["dataset", "method", "arm", "round", "trial", "setting"]


def fixed_score(metrics: dict[str, Any], bio: list[str], batch: list[str], bio_weight: float) -> float:
    """The unscaled composite of one run's metric values (NaN when bio or batch has no value)."""
    def mean(names):
        values = [metrics[n] for n in names if metrics.get(n) is not None and np.isfinite(metrics[n])]
        return float(np.mean(values)) if values else np.nan

    return bio_weight * mean(bio) + (1 - bio_weight) * mean(batch)


def run_score(metrics_file: str | Path, bio: list[str], batch: list[str], bio_weight: float) -> float:
    """The fixed score of one scored run; NaN when the run or its scoring failed."""
    m = metrics_or_failure(Path(metrics_file))
    rec = run_record_or_failure(Path(metrics_file).with_name("run.h5ad"))
    if m.get("status", "ok") != "ok" or rec.get("status") != "ok":
        return np.nan
    return fixed_score(m.get("metrics") or {}, bio, batch, bio_weight)


def setting_score(metrics_files: list[str], bio: list[str], batch: list[str], bio_weight: float
                  ) -> tuple[float | None, int]:
    """(mean fixed score over the scored seeds or None, number of seeds without a score)."""
    scores = [run_score(f, bio, batch, bio_weight) for f in metrics_files]
    ok = [s for s in scores if np.isfinite(s)]
    return (float(np.mean(ok)) if ok else None), len(scores) - len(ok)


def metrics_file(run_file: str) -> str:
    return str(Path(run_file).with_name("metrics.json"))


def scored_trials(round_files: list[str], bio: list[str], batch: list[str], bio_weight: float
                  ) -> list[dict[str, Any]]:
    """Every trial of the given round files, in trial order, with its score."""
    trials = []
    for path in round_files:
        record = json.loads(Path(path).read_text())
        for t in record["trials"]:
            score, failed = setting_score([metrics_file(r) for r in t["runs"]], bio, batch, bio_weight)
            trials.append({**t, "round": record["round"], "score": score, "n_failed": failed})
    return sorted(trials, key=lambda t: t["trial"])


def with_best_so_far(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    best, runs = np.nan, 0
    for row in rows:
        if row["score"] is not None and not np.isnan(row["score"]):
            best = row["score"] if np.isnan(best) else max(best, row["score"])
        runs += row["n_seeds"]
        row.update(best_so_far=best, runs=runs)
    return rows


def grid_rows(grid_metrics: list[str], space: list[str], bio, batch, bio_weight) -> list[dict[str, Any]]:
    """One row per grid setting, in the order of ``grid_metrics`` (the grid's order)."""
    by_setting: dict[tuple, list[str]] = {}
    for f in grid_metrics:
        ident = run_identity(Path(f).with_name("run.h5ad"))
        by_setting.setdefault((ident["dataset"], ident["method"], ident["setting"]), []).append(f)
    rows = []
    for n, ((dataset, method, setting), files) in enumerate(by_setting.items(), start=1):
        params = run_record_or_failure(Path(files[0]).with_name("run.h5ad")).get("params") or {}
        score, failed = setting_score(files, bio, batch, bio_weight)
        rows.append({"dataset": dataset, "method": method, "arm": "grid", "round": np.nan, "trial": n,
                     "setting": setting, **{p: params.get(p) for p in space},
                     "n_seeds": len(files), "n_failed": failed, "score": score})
    return with_best_so_far(rows)


def search_table(blocks: list[dict[str, Any]], bio: list[str], batch: list[str], bio_weight: float) -> pd.DataFrame:
    """search.tsv from blocks {"grid_metrics": [...], "rounds": [round files]} (one per dataset x method)."""
    rows = []
    for block in blocks:
        first = json.loads(Path(block["rounds"][0]).read_text())
        space = sorted(first["plan"]["space"])
        rows += grid_rows(block["grid_metrics"], space, bio, batch, bio_weight)
        trials = scored_trials(block["rounds"], bio, batch, bio_weight)
        rows += with_best_so_far([
            {"dataset": first["dataset"], "method": first["method"], "arm": "search", "round": t["round"],
             "trial": t["trial"], "setting": t["setting"], **{p: t["values"].get(p) for p in space},
             "n_seeds": len(t["runs"]), "n_failed": t["n_failed"], "score": t["score"]} for t in trials])
    df = pd.DataFrame(rows)
    if df.empty:
        return pd.DataFrame(columns=COLUMNS + ["n_seeds", "n_failed", "score", "best_so_far", "runs"])
    params = [c for c in df.columns if c not in COLUMNS + ["n_seeds", "n_failed", "score", "best_so_far", "runs"]]
    for p in params:  # list-valued parameters (layer sizes) as their JSON text
        df[p] = df[p].map(lambda v: json.dumps(v) if isinstance(v, (list, dict)) else v)
    df["round"] = df["round"].astype("Int64")
    return df[COLUMNS + params + ["n_seeds", "n_failed", "score", "best_so_far", "runs"]]
