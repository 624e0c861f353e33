"""Scores of a held-out novel cell type (scDREAMER Suppl. Fig. 3; runs with ``novel_label``).

For each run that held a type out of training (its record's ``params.novel_label``), on the
run's embedding of every cell:

- ``f1_own_cluster`` / ``ari_own_cluster``: is the type a separate cluster? Leiden on the k=15
  connectivities at each resolution of scib-metrics' grid (0.2 ... 2.0, as the NMI/ARI metrics
  use); per resolution the cluster that best matches the type's cells (F1 of "in that cluster"
  vs "of the type"), and the resolution where that F1 is highest (scib's isolated-label F1 rule).
  ARI is of the same two-way partition (type vs the rest against cluster vs the rest). 1 = the
  type is exactly one cluster; low = it is split or merged into seen types.
- ``separation``: distance from the type's centroid to the nearest seen type's centroid, divided
  by the seen types' spread (median over seen types of the mean distance of a type's cells to
  its own centroid). Above 1: farther from every seen type than a typical type's cells lie from
  their centre. ``nearest_type``: that seen type.
- ``ilisi_novel``: iLISI of the type's cells on the k=90 graph (median per-cell LISI over its
  cells, scib-metrics scale (median - 1) / (B - 1): 1 = as mixed across batches as possible).
- supervised runs (a ``predicted_label`` column): ``called_known`` (share of the type's cells
  predicted as a label the model knows: every label but the held-out one; a closed-set
  classifier such as scANVI's or scDREAMER-Sup's scores 1 by construction), ``top_called_label``
  and ``top_called_share`` (the label most of them get).

CLI: ``python -m metrics.novel_type --data D1 [D2 ...] --runs R1 [R2 ...] --out novel_type.tsv``
(``--data`` one file per run, in the same order). Writes the table with its header also when no
run held a type out.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

from metrics.aggregate import write_table

COLUMNS = ["dataset", "method", "setting", "seed", "status", "novel_label", "finetune_epochs", "n_novel",
           "f1_own_cluster", "ari_own_cluster", "resolution", "separation", "nearest_type", "ilisi_novel",
           "called_known", "top_called_label", "top_called_share"]


def best_cluster_f1(clusters: np.ndarray, is_novel: np.ndarray) -> tuple[float, float]:
    """(F1, ARI) of the cluster that best matches the ``is_novel`` cells (see module docstring)."""
    from sklearn.metrics import adjusted_rand_score

    best, best_cluster = -1.0, None
    n_novel = int(is_novel.sum())
    for c in np.unique(clusters[is_novel]):
        members = clusters == c
        tp = int((members & is_novel).sum())
        f1 = 2 * tp / (members.sum() + n_novel)
        if f1 > best:
            best, best_cluster = f1, c
    in_best = clusters == best_cluster
    return float(best), float(adjusted_rand_score(is_novel, in_best))


def separation(emb: np.ndarray, labels: np.ndarray, novel_label: str) -> tuple[float, str]:
    """(centroid distance to the nearest seen type / seen types' spread, that type)."""
    seen_types = [t for t in pd.unique(labels) if t != novel_label]
    centroids = {t: emb[labels == t].mean(0) for t in seen_types}
    spread = np.median([np.linalg.norm(emb[labels == t] - centroids[t], axis=1).mean() for t in seen_types])
    novel_centre = emb[labels == novel_label].mean(0)
    dist = {t: float(np.linalg.norm(novel_centre - c)) for t, c in centroids.items()}
    nearest = min(dist, key=dist.get)
    return float(dist[nearest] / spread) if spread > 0 else float("nan"), str(nearest)


def novel_ilisi(per_cell_lisi: np.ndarray, is_novel: np.ndarray, n_batches: int) -> float:
    """scib-metrics-scaled iLISI of the novel cells: (median LISI - 1) / (B - 1)."""
    from metrics.scib_set import ilisi_from_per_cell

    return ilisi_from_per_cell(per_cell_lisi[is_novel], n_batches)


def called_labels(predicted: np.ndarray, is_novel: np.ndarray, novel_label: str) -> tuple[float, str, float]:
    """(share of the novel cells called a known label, the most frequent call, its share)."""
    calls = pd.Series(np.asarray(predicted, dtype=str)[is_novel])
    counts = calls.value_counts()
    return float((calls != novel_label).mean()), str(counts.index[0]), float(counts.iloc[0] / calls.size)


def score(emb: np.ndarray, labels: np.ndarray, batches: np.ndarray, novel_label: str,
          predicted: np.ndarray | None = None) -> dict:
    """Every score of one run's embedding (the module docstring says what each is)."""
    from metrics.neighbors import exact_knn
    from metrics.scib_set import LEIDEN_RESOLUTIONS, leiden_clusterings, lisi_per_cell

    labels, batches = np.asarray(labels, dtype=str), np.asarray(batches, dtype=str)
    is_novel = labels == novel_label
    nbrs = exact_knn(np.asarray(emb, dtype=np.float32), min(90, emb.shape[0] - 1))
    clusterings = leiden_clusterings(nbrs.subset_neighbors(15).knn_graph_connectivities, LEIDEN_RESOLUTIONS)
    per_res = {r: best_cluster_f1(c, is_novel) for r, c in clusterings.items()}
    resolution = max(per_res, key=lambda r: per_res[r][0])
    sep, nearest = separation(np.asarray(emb, dtype=np.float64), labels, novel_label)
    out = {"n_novel": int(is_novel.sum()), "f1_own_cluster": per_res[resolution][0],
           "ari_own_cluster": per_res[resolution][1], "resolution": resolution, "separation": sep,
           "nearest_type": nearest,
           "ilisi_novel": novel_ilisi(lisi_per_cell(nbrs, batches), is_novel, np.unique(batches).size)}
    if predicted is not None:
        out.update(zip(("called_known", "top_called_label", "top_called_share"),
                       called_labels(predicted, is_novel, novel_label)))
    return out


def run_row(data_path: str | Path, run_path: str | Path) -> dict | None:
    """The table row of one run (None when it held no type out)."""
    import anndata as ad

    from metrics.run_inputs import read_run

    run, record = read_run(run_path)
    params = record.get("params") or {}
    if params.get("novel_label") is None:
        return None
    row = {"dataset": Path(run_path).parts[-5], "method": record["method"], "setting": record["setting"],
           "seed": record["seed"], "status": record["status"], "novel_label": str(params["novel_label"]),
           "finetune_epochs": int(params.get("novel_finetune_epochs") or 0)}
    if record["status"] != "ok" or "X_emb" not in run.obsm:
        return row
    data = ad.read_h5ad(data_path, backed="r")
    predicted = run.obs["predicted_label"].to_numpy() if "predicted_label" in run.obs else None
    row.update(score(np.asarray(run.obsm["X_emb"]), data.obs["label"].to_numpy(), data.obs["batch"].to_numpy(),
                     row["novel_label"], predicted))
    return row


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m metrics.novel_type", description=__doc__.split("\n")[0])
    ap.add_argument("--data", nargs="*", default=[], help="preprocessed dataset of each run, in --runs order")
    ap.add_argument("--runs", nargs="*", default=[], help="run.h5ad files")
    ap.add_argument("--out", required=True, help="novel_type.tsv to write")
    args = ap.parse_args(argv)
    if len(args.data) != len(args.runs):
        ap.error(f"--data names {len(args.data)} files for {len(args.runs)} runs; give one per run")
    rows = [r for d, run in zip(args.data, args.runs) if (r := run_row(d, run)) is not None]
    write_table(pd.DataFrame(rows, columns=COLUMNS), args.out)


if __name__ == "__main__":
    main()
