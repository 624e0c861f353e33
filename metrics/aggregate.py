"""Tables of a study: runs, metrics (long), scores, best settings, summary, scaling.

    python -m metrics.aggregate tables --metrics M1.json ... --tables OUT/tables
           --selection '{"criterion": "composite", "failed_seeds": "rank_below", "bio_weight": 0.6,
                         "set": "scib", "bio": null, "batch": null,
                         "datasets": {"jurkat_293t": {"criterion": "unsupervised"}}}'
    python -m metrics.aggregate scaling --runs R1.h5ad ... --benchmarks-root OUT/benchmarks/scaling
           --dataset NAME --out OUT/tables/scaling.tsv

Reads only files (metrics.json, run.h5ad's run record, Snakemake benchmark TSVs); every table
is written atomically. Failed runs stay in every table with status "failed" and their error.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from metrics import convergence, latent_scale
from metrics.catalog import METRIC_SETS, metric_info
from metrics.select import across_methods, check_selection, fit_exponent, score_runs, select_best, summarize

RUN_COLUMNS = ["dataset", "method", "setting", "base_setting", "seed", "label_missing", "status", "error", "device",
               "epochs", "wall_s", "integrate_s", "peak_rss_mb", "peak_gpu_mb", "run_path", "n_unlabelled",
               *convergence.COLUMNS, *latent_scale.COLUMNS]
GZIPPED_TABLES = {"lisi_percell", "loss_history"}


def write_table(df: pd.DataFrame, path: str | Path) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        df.to_csv(tmp, sep="\t", index=False, compression="gzip" if path.suffix == ".gz" else None)
        os.replace(tmp, path)
    finally:  # a full disk leaves no half-written temporary
        tmp.unlink(missing_ok=True)


def read_run_record(path: str | Path) -> dict:
    import h5py

    with h5py.File(path, "r") as f:
        raw = f["uns"]["run_json"][()]
    return json.loads(raw.decode() if isinstance(raw, bytes) else raw)


def _damaged(path: Path, redo: str, exc: Exception) -> dict:
    """The record of a run whose file cannot be read: failed, with the file and what to do."""
    reason = " ".join(str(exc).split())[:160]
    error = f"damaged file: delete {path} and run Snakemake again to {redo} ({type(exc).__name__}: {reason})"
    print(f"error: {error}", file=sys.stderr)
    return {"status": "failed", "error": error}


def run_record_or_failure(path: Path) -> dict:
    """The run record, or a failed record naming the file when it is missing or damaged; one bad
    file never stops the tables of the other runs."""
    if not path.exists():
        return {"status": "failed", "error": "run file missing"}
    try:
        return read_run_record(path)
    except (OSError, KeyError, ValueError) as exc:
        return _damaged(path, "redo the run", exc)


def metrics_or_failure(path: Path) -> dict:
    """metrics.json's content, or a failed record naming the file when it cannot be read."""
    try:
        content = json.loads(path.read_text())
        if not isinstance(content, dict):
            raise ValueError(f"a JSON {type(content).__name__}, not an object")
        return content
    except (OSError, ValueError) as exc:
        return _damaged(path, "score the run again", exc)


def run_identity(run_path: Path) -> dict:
    """dataset/method/setting/seed from .../runs/{dataset}/{method}/{setting}/seed{seed}/run.h5ad."""
    seed_dir = run_path.parent
    return {"dataset": seed_dir.parents[2].name, "method": seed_dir.parents[1].name,
            "setting": seed_dir.parent.name, "seed": int(seed_dir.name.removeprefix("seed"))}


def resolve_sets(selection: dict) -> tuple[list[str], list[str]]:
    name = selection.get("set") or "scib"
    if name not in METRIC_SETS:
        raise SystemExit(f"error: metrics.set '{name}' is unknown; known: {', '.join(sorted(METRIC_SETS))}")
    bio = selection.get("bio") or METRIC_SETS[name]["bio"]
    batch = selection.get("batch") or METRIC_SETS[name]["batch"]
    return list(bio), list(batch)


def legacy_base_setting(setting: str, label_missing: float) -> str:
    """base_setting of a run file written before run records held it, from the slug's documented
    form (docs/contracts.md): '<base>__label_missing-<share>', or 'label_missing-<share>' for 'default'."""
    if not label_missing:
        return setting
    suffix = f"label_missing-{float(label_missing):g}"
    return "default" if setting == suffix else setting.removesuffix(f"__{suffix}")


def build_tables(metric_files: list[str], selection: dict) -> dict[str, pd.DataFrame]:
    info = metric_info()
    bio, batch = resolve_sets(selection)
    direction = {m: bool(v.get("higher_is_better", True)) for m, v in info.items()}
    runs, long_rows, wide_rows, lisi_rows, history_rows = [], [], [], [], []
    per_cell = {}
    base_settings = {}  # run keys -> base_setting (a column of runs.tsv and scores.tsv)
    unlabelled = set()  # datasets scored without cell-type labels (metrics/score.py)
    for mf in metric_files:
        mf = Path(mf)
        run_path = mf.with_name("run.h5ad")
        ident = run_identity(run_path)
        rec = run_record_or_failure(run_path)
        m = metrics_or_failure(mf)
        status = "ok" if rec.get("status") == "ok" and m.get("status", "ok") == "ok" else "failed"
        error = rec.get("error") or m.get("error") or ""
        lm = float(rec.get("label_missing", m.get("label_missing", 0.0)) or 0.0)
        # the runner records the fully labelled setting a hidden-label run was made from
        base = rec.get("base_setting") or legacy_base_setting(ident["setting"], lm)
        base_settings[tuple(ident.values())] = base
        runs.append({**ident, "base_setting": base, "label_missing": lm, "status": status, "error": error,
                     "device": rec.get("device"), "epochs": rec.get("epochs"), "wall_s": rec.get("wall_s"),
                     "integrate_s": rec.get("integrate_s"), "peak_rss_mb": rec.get("peak_rss_mb"),
                     "peak_gpu_mb": rec.get("peak_gpu_mb"), "run_path": str(run_path),
                     "n_unlabelled": m.get("n_unlabelled"),
                     **convergence.assess({**rec, "status": status}),
                     **latent_scale.assess({**rec, "status": status})})
        history_rows += convergence.history_rows({**ident, "label_missing": lm}, rec)
        values = m.get("metrics") or {}
        reasons = m.get("na_reasons") or {}
        if m.get("labelled") is False or "dataset unlabelled" in reasons.values():
            unlabelled.add(ident["dataset"])
        for name in sorted(set(values) | set(reasons)):
            # bio / batch = counted in this study's composite; everything else is "other"
            mtype = "bio" if name in bio else "batch" if name in batch else "other"
            long_rows.append({**ident, "label_missing": lm, "status": status, "metric": name,
                              "value": values.get(name), "metric_type": mtype, "na_reason": reasons.get(name, "")})
        wide_rows.append({**ident, "label_missing": lm, "status": status, "error": error,
                          **{k: (np.nan if v is None else v) for k, v in values.items()}})
        per_cell[tuple(ident.values())] = m.get("per_cell") or {}
    runs_df = latent_scale.flag_runs(pd.DataFrame(runs, columns=RUN_COLUMNS))
    wide = pd.DataFrame(wide_rows)
    scores = score_runs(wide, bio, batch, direction, selection.get("bio_weight", 0.6)) if len(wide) else wide
    if len(scores):
        scores.insert(scores.columns.get_loc("setting") + 1, "base_setting",
                      [base_settings[k] for k in zip(scores["dataset"], scores["method"], scores["setting"],
                                                     scores["seed"])])
    dataset_criteria = {d: sec["criterion"] for d, sec in (selection.get("datasets") or {}).items()
                        if (sec or {}).get("criterion")}
    best = select_best(scores, selection.get("criterion", "composite"), selection.get("failed_seeds", "rank_below"),
                       dataset_criteria, unlabelled) if len(scores) else pd.DataFrame()
    metric_cols = [c for c in wide.columns if c not in ("dataset", "method", "setting", "seed", "label_missing",
                                                        "status", "error")]
    best = across_methods(scores, best, metric_cols, bio, batch, direction, selection.get("bio_weight", 0.6)) \
        if len(best) else best
    if len(best):
        run_paths = {(r["dataset"], r["method"], r["setting"], r["seed"]): r["run_path"] for r in runs}
        best.insert(best.columns.get_loc("representative_seed") + 1, "representative_run", [
            run_paths.get((b.dataset, b.method, b.best_setting, b.representative_seed), "")
            for b in best.itertuples()])
        for b in best.itertuples():
            if np.isnan(b.representative_seed):
                continue
            cells = per_cell.get((b.dataset, b.method, b.best_setting, int(b.representative_seed)), {})
            for metric, vals in cells.items():
                lisi_rows.extend({"dataset": b.dataset, "method": b.method, "setting": b.best_setting,
                                  "seed": int(b.representative_seed), "metric": metric, "value": v}
                                 for v in vals)
    return {
        "runs": runs_df,
        "metrics": pd.DataFrame(long_rows, columns=["dataset", "method", "setting", "seed", "label_missing",
                                                    "status", "metric", "value", "metric_type", "na_reason"]),
        "scores": scores,
        "best": best,
        "summary": summarize(best) if len(best) else pd.DataFrame(),
        "lisi_percell": pd.DataFrame(lisi_rows, columns=["dataset", "method", "setting", "seed", "metric", "value"]),
        "loss_history": convergence.loss_history_table(history_rows),
    }


def scaling_table(run_files: list[str], benchmarks_root: str, dataset: str) -> pd.DataFrame:
    rows = []
    for rf in run_files:
        rf = Path(rf)
        n = int(rf.parent.name.removeprefix("n"))
        method = rf.parent.parent.name
        rec = run_record_or_failure(rf)
        bench = Path(benchmarks_root) / dataset / method / f"n{n}.tsv"
        s = rss = np.nan
        if bench.exists():
            b = pd.read_csv(bench, sep="\t")
            s, rss = float(b["s"].iloc[0]), float(b["max_rss"].iloc[0])
        rows.append({"dataset": dataset, "method": method, "n_cells": n, "device": rec.get("device", ""),
                     "status": rec.get("status", "failed"), "error": rec.get("error", ""), "s": s,
                     "integrate_s": rec.get("integrate_s", np.nan), "max_rss_mb": rss,
                     "peak_rss_mb": rec.get("peak_rss_mb", np.nan), "peak_gpu_mb": rec.get("peak_gpu_mb", np.nan)})
    df = pd.DataFrame(rows)
    if df.empty:
        return df
    # start-up = the job's wall-clock minus the method's own integration: imports, data loading, writing
    df["integrate_s"] = pd.to_numeric(df["integrate_s"], errors="coerce")
    df["startup_s"] = df["s"] - df["integrate_s"]
    for _method, block in df.groupby("method"):
        ok = block[block["status"] == "ok"]
        # the exponent is fitted on the integration time alone: on small data the job's wall-clock is
        # mostly start-up, which does not grow with the number of cells
        df.loc[block.index, "exponent_s"] = fit_exponent(ok["n_cells"], ok["integrate_s"])
        df.loc[block.index, "exponent_wall_s"] = fit_exponent(ok["n_cells"], ok["s"])
        df.loc[block.index, "exponent_mem"] = fit_exponent(ok["n_cells"], ok["max_rss_mb"])
    return df.sort_values(["method", "n_cells"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m metrics.aggregate", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    t = sub.add_parser("tables")
    t.add_argument("--metrics", nargs="+", required=True)
    t.add_argument("--tables", required=True)
    t.add_argument("--selection", default="{}")
    s = sub.add_parser("scaling")
    s.add_argument("--runs", nargs="*", default=[])
    s.add_argument("--benchmarks-root", required=True)
    s.add_argument("--dataset", required=True)
    s.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    if args.command == "tables":
        try:
            selection = json.loads(args.selection)
        except json.JSONDecodeError as exc:
            raise SystemExit(f"error: --selection is not valid JSON ({exc})") from None
        try:
            check_selection(selection)
        except ValueError as exc:
            raise SystemExit(f"error: --selection: {exc}") from None
        tables = build_tables(args.metrics, selection)
        for name, df in tables.items():
            suffix = ".tsv.gz" if name in GZIPPED_TABLES else ".tsv"
            write_table(df, Path(args.tables) / f"{name}{suffix}")
        best = tables["best"]
        print(f"{len(tables['runs'])} runs ({(tables['runs']['status'] != 'ok').sum()} failed); "
              f"{len(best)} dataset x method selections")
    else:
        write_table(scaling_table(args.runs, args.benchmarks_root, args.dataset), args.out)
    return 0


if __name__ == "__main__":
    from guards.cli import guarded

    sys.exit(guarded("python -m metrics.aggregate", main, outputs=("--tables", "--out")))
