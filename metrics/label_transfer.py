"""Label transfer across modalities by kNN in the integrated space (DAVAE's cross-modality task).

The DAVAE preprint integrates scRNA-seq with scATAC-seq gene activity and with Visium spots, then
transfers labels: "The integrated scRNA-seq data (i.e. cell embedding) along with its cell type
labels were treated as training data, or reference data, and each of the scATAC-seq cells was
assigned to a predicted cell type." It used a deep-learning classifier and a soft spot
classification; here the same question is asked of every method with one classifier that any
integrated output supports: each target cell takes the majority label of its ``k`` nearest
reference cells in the run's embedding (a corrected matrix: its 50-PC PCA), or, for a graph-only
output, the label with the largest summed edge weight to reference cells among its graph
neighbours ("unassigned" when it has none). Scored per target batch (= modality here) against the
target cells' true labels: accuracy and macro-F1 (sklearn, over the target's true labels), next to
the accuracy a label-blind prediction with the reference's label frequencies would reach
(``chance_accuracy`` = sum_t p_target(t) p_reference(t)).

``python -m metrics.label_transfer --runs R1.h5ad ... --reference RNA --k 15 --out TABLE.tsv``
writes one row per run x target batch (columns: ``COLUMNS``).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

from metrics.aggregate import write_table

UNASSIGNED = "unassigned"
COLUMNS = ["dataset", "method", "setting", "seed", "status", "error", "representation", "reference", "target",
           "n_reference", "n_target", "k", "accuracy", "macro_f1", "chance_accuracy"]


def transfer_by_embedding(embedding: np.ndarray, labels: np.ndarray, is_reference: np.ndarray,
                          k: int) -> np.ndarray:
    """Majority label of each non-reference cell's ``k`` nearest reference cells (Euclidean).

    A tie goes to the label of the nearest cell among the tied labels' cells.
    """
    from sklearn.neighbors import NearestNeighbors

    ref = np.flatnonzero(is_reference)
    if ref.size == 0:
        raise ValueError("no reference cell to transfer labels from")
    k = min(k, ref.size)
    _, idx = NearestNeighbors(n_neighbors=k).fit(embedding[ref]).kneighbors(embedding[~is_reference])
    votes = labels[ref][idx]  # target cells x k, nearest first
    out = np.empty(votes.shape[0], dtype=object)
    for row, cell_votes in enumerate(votes):
        names, counts = np.unique(cell_votes, return_counts=True)
        tied = set(names[counts == counts.max()])
        out[row] = next(v for v in cell_votes if v in tied)
    return out


def transfer_by_graph(connectivities, labels: np.ndarray, is_reference: np.ndarray) -> np.ndarray:
    """Label with the largest summed edge weight to reference cells, per non-reference cell."""
    import scipy.sparse as sp

    names, codes = np.unique(labels[is_reference], return_inverse=True)
    graph = sp.csr_matrix(connectivities)[~is_reference][:, is_reference]
    onehot = sp.csr_matrix((np.ones(codes.size), (np.arange(codes.size), codes)), shape=(codes.size, names.size))
    weights = np.asarray((graph @ onehot).todense())
    out = names[weights.argmax(axis=1)].astype(object)
    out[weights.max(axis=1) <= 0] = UNASSIGNED
    return out


def transfer_scores(true: np.ndarray, predicted: np.ndarray) -> dict[str, float]:
    """Accuracy and macro-F1 (over the true labels' classes) of transferred labels."""
    from metrics.paper_metrics import macro_f1

    true, predicted = np.asarray(true).astype(str), np.asarray(predicted).astype(str)
    return {"accuracy": float(np.mean(true == predicted)),
            "macro_f1": macro_f1(true, predicted, np.ones(true.size, dtype=bool))}


def chance_accuracy(target_labels: np.ndarray, reference_labels: np.ndarray) -> float:
    """Expected accuracy of predictions drawn with the reference's label frequencies."""
    target = pd.Series(np.asarray(target_labels).astype(str)).value_counts(normalize=True)
    ref = pd.Series(np.asarray(reference_labels).astype(str)).value_counts(normalize=True)
    return float((target * ref.reindex(target.index, fill_value=0.0)).sum())


def score_run(run, record: dict, dataset: str, reference: str, k: int) -> list[dict]:
    """Rows of ``COLUMNS`` for one run file (read with metrics.run_inputs.read_run)."""
    from metrics.run_inputs import run_embedding

    base = {"dataset": dataset, **{key: record.get(key) for key in ("method", "setting", "seed")}}
    base.update(reference=reference, k=k)
    if record.get("status") != "ok":
        return [{**base, "status": "failed", "error": record.get("error") or "run failed"}]
    batch = run.obs["batch"].astype(str).to_numpy()
    labels = run.obs["label"].astype(str).to_numpy()
    if reference not in set(batch):
        raise ValueError(f"label_transfer.reference {reference!r} is not a batch of dataset "
                         f"{dataset!r} (batches: {', '.join(sorted(set(batch)))}): set it to one of them")
    embedding, kind = run_embedding(run)
    rows = []
    for target in sorted(set(batch) - {reference}):
        cells = (batch == reference) | (batch == target)
        is_ref = batch[cells] == reference
        if embedding is not None:
            predicted = transfer_by_embedding(embedding[cells], labels[cells], is_ref, k)
        else:
            predicted = transfer_by_graph(run.obsp["connectivities"][cells][:, cells], labels[cells], is_ref)
        true = labels[cells][~is_ref]
        rows.append({**base, "status": "ok", "error": "", "representation": kind, "target": target,
                     "n_reference": int(is_ref.sum()), "n_target": int(true.size),
                     **transfer_scores(true, predicted),
                     "chance_accuracy": chance_accuracy(true, labels[cells][is_ref])})
    return rows


def main(argv: list[str] | None = None) -> None:
    from metrics.run_inputs import read_run

    parser = argparse.ArgumentParser(prog="python -m metrics.label_transfer", description=__doc__.splitlines()[0])
    parser.add_argument("--runs", nargs="+", required=True, help="run.h5ad files")
    parser.add_argument("--reference", required=True, help="batch whose labels are transferred")
    parser.add_argument("--k", type=int, default=15, help="nearest reference cells that vote")
    parser.add_argument("--out", required=True, help="TSV to write")
    args = parser.parse_args(argv)
    rows = []
    for path in args.runs:
        run, record = read_run(path)
        if record.get("label_missing"):
            continue  # hidden-label runs answer another question
        # the record names no dataset: runs/{dataset}/{method}/{setting}/seed{n}/run.h5ad does
        rows += score_run(run, record, Path(path).parents[3].name, args.reference, args.k)
    write_table(pd.DataFrame(rows, columns=COLUMNS), args.out)


if __name__ == "__main__":
    main()
