"""Latent-scale diagnostic of trained runs, from the per-dimension spread the runner records.

For every trained run with an embedding the runner records ``latent_sd``: the standard
deviation over cells of each embedding dimension (for the VAEs, of the posterior means). A run
is **flagged** (``latent_scale_flag`` "yes") when two things hold:

- a few dimensions carry the embedding: its largest dimension's sd is more than
  ``WITHIN_RATIO`` times the median over its dimensions (``latent_sd_ratio``); and
- those dimensions are stretched: its largest sd is more than ``DATASET_RATIO`` times what the
  other methods on the same dataset reach (``latent_sd_vs_dataset``: over the median, across the
  other methods, of each method's median largest sd; at least ``MIN_METHODS`` methods needed).
  The run's own method is left out of its reference: with few methods a degenerate run would
  otherwise raise the median it is compared with (sysVI, VAMP and cVAE on common-3 after 200
  epochs: sysVI's largest sd 8.6, VAMP's 4.3, cVAE's 1.1: 1.99x the median of all three, 3.2x
  that of the other two).

Either alone is common in a healthy model: VAEs leave unused dimensions near sd 0 (scvi-tools'
SysVI on 551 cells of Splatter common-3 after 100 epochs: three dimensions at sd 3.0-3.7, the
others <= 0.5), and methods differ in latent scale. Both together is how sysVI's degenerate
solution on common-3 (1,069 cells) showed itself: after 500 epochs the paper code had three
dimensions at sd 6.8-9.4 and the others <= 0.14 (after 200: 5.2-8.6, where scvi-tools' SysVI's
largest was 3.5). Its systems did not mix (iLISI 0.016): the kNN graph behind every metric rests on a few
stretched directions. A flag is not a failure: it says that
the run's scores describe those few directions and that its UMAP deserves a look first.

Columns (runs.tsv): ``latent_sd_max``, ``latent_sd_ratio``, ``latent_sd_vs_dataset``,
``latent_scale_flag`` ("yes" | "no"; empty for runs without a recorded spread, i.e. failed,
untrained, graph or corrected-expression outputs, and on datasets with too few such methods).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

WITHIN_RATIO = 10.0
DATASET_RATIO = 2.0
MIN_METHODS = 3
COLUMNS = ["latent_sd_max", "latent_sd_ratio", "latent_sd_vs_dataset", "latent_scale_flag"]
FLAGGED, NOT_FLAGGED = "yes", "no"


def assess(record: dict) -> dict[str, float]:
    """The run's own spread: its largest per-dimension sd and that over the median dimension's."""
    sd = np.asarray(record.get("latent_sd") or [], dtype=float)
    if record.get("status", "ok") != "ok" or sd.size < 2 or not np.isfinite(sd).all():
        return {"latent_sd_max": np.nan, "latent_sd_ratio": np.nan}
    median = float(np.median(sd))
    return {"latent_sd_max": float(sd.max()), "latent_sd_ratio": float(sd.max() / median) if median > 0 else np.inf}


def flag_runs(runs: pd.DataFrame) -> pd.DataFrame:
    """``runs`` with ``latent_sd_vs_dataset`` and ``latent_scale_flag`` (from ``assess``'s columns)."""
    runs = runs.copy()
    runs["latent_sd_vs_dataset"] = np.nan
    runs["latent_scale_flag"] = ""
    assessed = runs[runs["latent_sd_max"].notna()]
    for _, block in assessed.groupby("dataset"):
        per_method = block.groupby("method")["latent_sd_max"].median()
        if len(per_method) < MIN_METHODS:
            continue
        others = {m: float(per_method.drop(m).median()) for m in per_method.index}
        vs = block["latent_sd_max"] / block["method"].map(others)
        runs.loc[block.index, "latent_sd_vs_dataset"] = vs
        stretched = (block["latent_sd_ratio"] > WITHIN_RATIO) & (vs > DATASET_RATIO)
        runs.loc[block.index, "latent_scale_flag"] = np.where(stretched, FLAGGED, NOT_FLAGGED)
    return runs
