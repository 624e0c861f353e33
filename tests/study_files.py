"""Synthetic per-run files of a study (run.h5ad run record + metrics.json), shaped like the
runner's and metrics/score.py's, for tests of the tables and the report without running methods.

Setting names come from methods.settings (hidden-label runs are named as the runner names
them), and an unlabelled dataset gets its bio metrics null with reason "dataset unlabelled".
"""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np

from methods import registry
from methods.settings import base_setting, with_label_missing
from metrics.score import LABEL_FREE

BIO = ["nmi", "ari", "asw_label", "clisi", "isolated_label_asw", "isolated_label_f1"]
BATCH = ["asw_batch", "ilisi", "kbet", "graph_connectivity", "pcr_comparison"]
OTHER = ["macro_f1", "batch_cluster_nmi", "batch_cluster_ari"]


def write_run_record(path: Path, record: dict) -> None:
    """A run.h5ad holding only uns/run_json (all the tables read of a run file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as f:
        uns = f.create_group("uns")
        uns.attrs.update({"encoding-type": "dict", "encoding-version": "0.1.0"})
        uns["run_json"] = json.dumps(record)
        uns["run_json"].attrs.update({"encoding-type": "string", "encoding-version": "0.2.0"})


def run_metrics(rng: np.random.Generator, labelled: bool, label_missing: float, quality: float) -> tuple[dict, dict]:
    """(metrics, na_reasons) of one ok run; ``quality`` shifts every value (0..1)."""
    values, reasons = {}, {}
    for name in BIO + BATCH + OTHER:
        if not labelled and name not in LABEL_FREE:
            values[name], reasons[name] = None, "dataset unlabelled"
        elif name == "macro_f1" and label_missing == 0:
            values[name], reasons[name] = None, "no cell had its label hidden"
        else:
            values[name] = float(np.clip(0.3 + 0.5 * quality + rng.normal(0, 0.03), 0, 1))
    return values, reasons


def write_study(out: Path, datasets: dict[str, bool], methods: dict[str, list[str]], seeds: list[int],
                label_missing: list[float], failed: set[tuple] = frozenset(), seed: int = 0) -> list[Path]:
    """Write runs/{dataset}/{method}/{setting}/seed{n}/run.h5ad + metrics.json for every run.

    ``datasets``: name -> labelled; ``methods``: name -> base setting names; ``failed``: the
    (dataset, method, setting, seed) runs that failed. Quality falls with the share of hidden
    labels, so the missing-label figure has a trend. Returns the metrics.json paths.
    """
    rng = np.random.default_rng(seed)
    paths = []
    for dataset, labelled in datasets.items():
        for method, settings in methods.items():
            expanded = with_label_missing(method, [(s, {}) for s in settings], label_missing)
            for setting, _params, share in expanded:
                for s in seeds:
                    run_dir = out / "runs" / dataset / method / setting / f"seed{s}"
                    ok = (dataset, method, setting, s) not in failed
                    error = "" if ok else "TrainingDivergedError: NaN in loss"
                    write_run_record(run_dir / "run.h5ad", {
                        "dataset": dataset, "method": method, "setting": setting, "seed": s,
                        "base_setting": base_setting(setting, share), "label_missing": share, "status": "ok" if ok else "failed", "error": error,
                        "device": "cpu", "epochs": 2 if registry.get(method).gpu else None, "wall_s": 1.0})
                    quality = rng.uniform(0.2, 0.8) - 0.5 * share
                    values, reasons = run_metrics(rng, labelled, share, quality) if ok else (
                        dict.fromkeys(BIO + BATCH + OTHER), dict.fromkeys(BIO + BATCH + OTHER, "run failed"))
                    result = {"dataset": dataset, "method": method, "setting": setting, "seed": s,
                              "label_missing": share, "status": "ok" if ok else "failed", "error": error,
                              "metrics": values, "na_reasons": reasons, "labelled": labelled,
                              "per_cell": {"ilisi": list(rng.uniform(1, 2, 20))} if ok else {}}
                    (run_dir / "metrics.json").write_text(json.dumps(result))
                    paths.append(run_dir / "metrics.json")
    return paths
