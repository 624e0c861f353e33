"""The seed papers' own metrics (no library has them), each a small pure function.

Every function is linear (or n log n) in cells: the neighbourhood metrics read the shared kNN
lists and kBET over neighbourhood sizes tests a bounded number of cells per cell type.
Moran's I preservation (sysVI) is in ``metrics/moransi.py``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import scipy.sparse as sp
from scipy.stats import chi2


def _codes(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Integer codes and the categories of a label vector."""
    cat = pd.Categorical(np.asarray(values))
    return np.asarray(cat.codes, dtype=np.int64), np.asarray(cat.categories)


def isolated_label_f1(clusterings: dict[float, np.ndarray], labels: np.ndarray, isolated: list) -> float:
    """Isolated-label F1 (scIB, Luecken et al. 2022).

    For each isolated label: the best F1 of "cell has the label" against "cell is in cluster c"
    over all clusters c, maximized over the clustering resolutions (scib 1.x optimizes the
    resolution of its Leiden clustering for this same score,
    ``scib/metrics/isolated_labels.py::score_isolated_label``); the mean over isolated labels.
    scib clusters with scanpy's Leiden at 0.2..2.0; we reuse the shared igraph Leiden
    clusterings at the same resolutions (``metrics/scib_set.py``).
    """
    if not isolated:
        return float("nan")
    labels = np.asarray(labels)
    scores = []
    for lab in isolated:
        is_lab = labels == lab
        n_lab = int(is_lab.sum())
        best = 0.0
        for clusters in clusterings.values():
            size = np.bincount(clusters)
            tp = np.bincount(clusters[is_lab], minlength=size.size)
            f1 = 2 * tp / (size + n_lab)  # 2TP / (2TP + FP + FN) with FP+TP = size, FN+TP = n_lab
            best = max(best, float(f1.max()))
        scores.append(best)
    return float(np.mean(scores))


def nmi_fixed_and_jaccard(clusters: np.ndarray, labels: np.ndarray) -> tuple[float, dict[str, float]]:
    """NMI-fixed and per-cell-type Jaccard index (sysVI, Hrovatin et al. 2025).

    Leiden clusters at one fixed high resolution (r=2) are annotated with their majority
    label; NMI (arithmetic) and, per cell type t, Jaccard = |pred=t and true=t| / |pred=t or
    true=t| compare that annotation with the true labels.
    """
    from sklearn.metrics import normalized_mutual_info_score

    codes, cats = _codes(np.asarray(labels).astype(str))  # scores on codes: the strings cost seconds per 1M cells
    table = sp.coo_matrix((np.ones_like(clusters), (clusters, codes)), shape=(clusters.max() + 1, cats.size)).toarray()
    pred = table.argmax(axis=1)[clusters]  # each cell: its cluster's most common label (ties: first)
    nmi = float(normalized_mutual_info_score(codes, pred, average_method="arithmetic"))
    jac = {}
    for t, name in enumerate(cats):
        true_t, pred_t = codes == t, pred == t
        jac[str(name)] = float((true_t & pred_t).sum() / (true_t | pred_t).sum())
    return nmi, jac


def batch_unique_labels(labels: np.ndarray, batch: np.ndarray) -> list[str]:
    """Cell types whose cells all come from one batch (sysVI Fig. 4's unbalanced populations,
    in their extreme form: present in one batch only), sorted."""
    types, type_idx = np.unique(np.asarray(labels).astype(str), return_inverse=True)
    batches, batch_idx = np.unique(np.asarray(batch).astype(str), return_inverse=True)
    present = np.zeros((types.size, batches.size), dtype=bool)
    present[type_idx, batch_idx] = True
    return [str(t) for t, n in zip(types, present.sum(axis=1)) if n == 1]


def shared_labels(labels: np.ndarray, batch: np.ndarray) -> list[str]:
    """Cell types present in every batch (sysVI's cell types shared between systems), sorted."""
    types, type_idx = np.unique(np.asarray(labels).astype(str), return_inverse=True)
    batches, batch_idx = np.unique(np.asarray(batch).astype(str), return_inverse=True)
    present = np.zeros((types.size, batches.size), dtype=bool)
    present[type_idx, batch_idx] = True
    return [str(t) for t, every in zip(types, present.all(axis=1)) if every]


def _chi2_accept(counts: np.ndarray, expected_freq: np.ndarray, alpha: float) -> np.ndarray:
    """kBET's chi-square test per row: observed batch counts vs k x expected frequencies.

    Batches with expected frequency 0 are left out (they cannot be observed); degrees of
    freedom = present batches - 1. Returns True where p >= alpha (accepted = well mixed).
    """
    present = expected_freq > 0
    k = counts.sum(axis=1, keepdims=True)
    exp = k * expected_freq[present]
    stat = np.sum((counts[:, present] - exp) ** 2 / exp, axis=1)
    dof = int(present.sum()) - 1
    if dof <= 0:
        return np.ones(counts.shape[0], dtype=bool)
    return chi2.sf(stat, dof) >= alpha


def knn_adjacency(indices: np.ndarray) -> sp.csr_matrix:
    """Binary cells x cells adjacency of kNN lists (self in column 0 is left out)."""
    n, k = indices.shape
    rows = np.repeat(np.arange(n), k - 1)
    return sp.csr_matrix((np.ones(rows.size), (rows, indices[:, 1:].ravel())), shape=(n, n))


def positive_true_positive(adjacency, labels: np.ndarray, batch: np.ndarray,
                           alpha: float = 0.05) -> tuple[np.ndarray, np.ndarray]:
    """Positive and true-positive cells (iMAP, Wang et al. 2021; used by scDREAMER and scCRAFT).

    ``adjacency``: cells x cells, nonzero where j is a neighbour of i (a kNN graph, see
    ``knn_adjacency``, or a graph-only method's own graph). A cell is positive when all its
    neighbours have its cell type; a positive cell is a true positive when the batch
    composition of its neighbourhood passes kBET's chi-square test (p >= alpha) against the
    global batch composition of its cell type. Returns boolean arrays (positive, true_positive).
    """
    lab, lcats = _codes(labels)
    bat, bcats = _codes(batch)
    n = lab.size
    adj = sp.csr_matrix(adjacency, copy=True)
    adj.setdiag(0)
    adj.eliminate_zeros()
    adj.data[:] = 1.0
    onehot_l = sp.csr_matrix((np.ones(n), (np.arange(n), lab)), shape=(n, lcats.size))
    onehot_b = sp.csr_matrix((np.ones(n), (np.arange(n), bat)), shape=(n, bcats.size))
    same = np.asarray((adj @ onehot_l)[np.arange(n), lab]).ravel()
    degree = np.asarray(adj.sum(axis=1)).ravel()
    positive = (degree > 0) & (same == degree)
    batch_counts = np.asarray((adj @ onehot_b).todense())
    type_freq = np.asarray((onehot_l.T @ onehot_b).todense(), dtype=float)
    type_freq /= type_freq.sum(axis=1, keepdims=True)
    true_pos = np.zeros(n, dtype=bool)
    for t in np.unique(lab[positive]):
        rows = np.flatnonzero(positive & (lab == t))
        true_pos[rows] = _chi2_accept(batch_counts[rows], type_freq[t], alpha)
    return positive, true_pos


def f1_lisi(ilisi_scaled: float, clisi_scaled: float) -> float:
    """F1-LISI (scCRAFT suppl.; after Xu et al.): harmonic mean of scaled iLISI and scaled cLISI.

    Both inputs are scIB-scaled so that 1 is best (cLISI scaled = 1 - normalized cLISI).
    """
    a, b = float(ilisi_scaled), float(clisi_scaled)
    if not np.isfinite(a) or not np.isfinite(b) or a + b <= 0:
        return 0.0 if (np.isfinite(a) and np.isfinite(b)) else float("nan")
    return 2 * a * b / (a + b)


def one_minus_ari_batch(clusters: np.ndarray, batch: np.ndarray) -> float:
    """1 - ARI between clusters and batches (DAVAE, after Tran et al. 2020): 1 = batches mixed."""
    from sklearn.metrics import adjusted_rand_score

    return float(1 - adjusted_rand_score(_codes(batch)[0], clusters))


def kbet_acceptance_over_sizes(X: np.ndarray, labels: np.ndarray, batch: np.ndarray,
                               fractions=(0.05, 0.10, 0.15, 0.20, 0.25), alpha: float = 0.05,
                               max_test_cells: int = 500, min_cells: int = 10, seed: int = 0,
                               block: int = 64, block_elements: int = 1 << 24) -> dict[float, float]:
    """kBET acceptance per cell type over neighbourhood sizes of 5..25% of the cell type (DAVAE).

    Per cell type with >= ``min_cells`` cells and >= 2 batches: up to ``max_test_cells`` random
    cells (seeded) are tested, as kBET tests a random subset; each one's neighbours are
    found exactly among the cells of its type in ``X``; for each fraction f the k = f x n_type
    nearest (self excluded) go through the chi-square test against the type's batch mix.
    Returns {fraction: acceptance averaged over cell types}. Cost: tested cells x n_type
    (linear in cells). Memory: ``block`` tested cells at a time, fewer when a cell type is so
    large that block x n_type would pass ``block_elements``; batch counts grow neighbour by
    neighbour (tested cells x batches), never tested cells x k x batches.
    """
    X = np.asarray(X, dtype=np.float32)
    lab, _ = _codes(labels)
    bat, bcats = _codes(batch)
    n_b = bcats.size
    rng = np.random.default_rng(seed)
    per_size: dict[float, list[float]] = {f: [] for f in fractions}
    for t in np.unique(lab):
        members = np.flatnonzero(lab == t)
        n_t = members.size
        b_t = bat[members]
        if n_t < min_cells or np.unique(b_t).size < 2:
            continue
        freq = np.bincount(b_t, minlength=n_b) / n_t
        k_max = min(max(max(1, int(np.floor(f * n_t))) for f in fractions), n_t - 1)
        ks = sorted((min(max(1, int(np.floor(f * n_t))), k_max), f) for f in fractions)
        test = rng.choice(n_t, min(max_test_cells, n_t), replace=False)
        Xt = X[members]
        sq = np.einsum("ij,ij->i", Xt, Xt)
        accepted = {f: 0 for f in fractions}
        rows = max(1, min(block, block_elements // n_t))
        for start in range(0, test.size, rows):
            q = test[start:start + rows]
            d2 = sq[q, None] + sq[None, :] - 2 * Xt[q] @ Xt.T
            d2[np.arange(q.size), q] = -np.inf  # self first, then excluded
            part = np.argpartition(d2, k_max, axis=1)[:, :k_max + 1]
            order = np.take_along_axis(part, np.argsort(np.take_along_axis(d2, part, axis=1), axis=1), axis=1)
            nb = b_t[order[:, 1:]]  # neighbours' batches, nearest first, self dropped
            offsets = np.arange(q.size)[:, None] * n_b
            counts = np.zeros(q.size * n_b)
            done = 0
            for k, f in ks:  # add the neighbours k_prev+1..k to the running batch counts
                counts += np.bincount((nb[:, done:k] + offsets).ravel(), minlength=q.size * n_b)
                done = k
                accepted[f] += int(_chi2_accept(counts.reshape(q.size, n_b), freq, alpha).sum())
        for f in fractions:
            per_size[f].append(accepted[f] / test.size)
    return {f: (float(np.mean(v)) if v else float("nan")) for f, v in per_size.items()}


def macro_f1(true_labels: np.ndarray, predicted: np.ndarray, hidden: np.ndarray) -> float:
    """Macro-F1 of predicted vs true labels on the cells whose label was hidden (scDREAMER)."""
    from sklearn.metrics import f1_score

    hidden = np.asarray(hidden, dtype=bool)
    y_true = np.asarray(true_labels).astype(str)[hidden]
    y_pred = np.asarray(predicted).astype(str)[hidden]
    return float(f1_score(y_true, y_pred, labels=np.unique(y_true), average="macro", zero_division=0))

