"""The metric catalog: which metrics exist, which count as bio / batch, and what each needs.

Pure Python (no heavy imports): the selection code (``metrics/select.py``) and the reports
import only this module.

``needs``: ``embedding`` (distances in an embedding: silhouettes, PCR, Moran's I, kBET over
neighbourhood sizes), ``graph`` (a kNN graph, which a graph-only output such as BBKNN has),
``labels`` (only the run's obs: label predictions). Bio metrics additionally need cell-type
labels; on unlabelled data they are null with a recorded reason.
"""

from __future__ import annotations

SCIB = "Luecken et al. 2022 (scIB); scib-metrics"
SYSVI = "Hrovatin et al. 2025 (sysVI)"
IMAP = "Wang et al. 2021 (iMAP), used by scDREAMER 2023 and scCRAFT 2025"
DAVAE = "Hu et al. (DAVAE preprint)"
SCCRAFT = "He et al. 2025 (scCRAFT)"
SCDREAMER = "Shree et al. 2023 (scDREAMER)"

# name -> (type, higher_is_better, needs, paper)
_INFO: dict[str, tuple[str, bool, str, str]] = {
    # scIB set (scib-metrics implementations, scib where the two differ: see _REFERENCE)
    "nmi": ("bio", True, "graph", SCIB + "; Leiden, resolution optimized over 0.2..2.0"),
    "ari": ("bio", True, "graph", SCIB + "; Leiden, resolution optimized over 0.2..2.0"),
    "asw_label": ("bio", True, "embedding", SCIB),
    "clisi": ("bio", True, "graph", SCIB),
    "isolated_label_asw": ("bio", True, "embedding", SCIB),
    "isolated_label_f1": ("bio", True, "graph", SCIB + " (F1 definition, written here)"),
    "asw_batch": ("batch", True, "embedding", SCIB),
    "bras": ("batch", True, "embedding", "Rautenstrauch & Ohler 2025 (BRAS); scib-metrics"),
    "ilisi": ("batch", True, "graph", SCIB),
    "ilisi_shared": ("other", True, "graph", SYSVI + "; iLISI of the cells of cell types present in every batch "
                     "(a batch-unique type cannot mix)"),
    "ilisi_scaled": ("other", True, "embedding", SYSVI + "; Fig. 2a: iLISI on the embedding with standardised "
                     "features"),
    "nmi_fixed_scaled": ("other", True, "embedding", SYSVI + "; Fig. 2a: NMI fixed on the embedding with "
                         "standardised features"),
    "kbet": ("batch", True, "graph", SCIB + "; kBET per label"),
    "graph_connectivity": ("batch", True, "graph", SCIB),
    "pcr_comparison": ("batch", True, "embedding", SCIB),
    # seed papers' own metrics (written here)
    "nmi_fixed": ("bio", True, "graph", SYSVI + "; Leiden r=2, clusters labelled by majority"),
    "jaccard": ("bio", True, "graph", SYSVI + "; mean per-cell-type Jaccard, Leiden r=2"),
    "jaccard_batch_unique": ("other", True, "graph", SYSVI + "; Fig. 4: mean Jaccard of the cell types found "
                             "in one batch only (mixing of unbalanced cell types)"),
    "moransi": ("bio", True, "embedding", SYSVI + "; post/pre Moran's I per sample x cell type"),
    "positive_rate": ("bio", True, "graph", IMAP),
    "true_positive_rate": ("batch", True, "graph", IMAP),
    "f1_lisi": ("other", True, "graph", SCCRAFT + "; harmonic mean of scaled iLISI and 1-scaled cLISI"),
    "one_minus_ari_batch": ("batch", True, "graph", DAVAE + "; 1 - ARI(batch, Leiden clusters)"),
    "kbet_acceptance": ("batch", True, "embedding", DAVAE + "; mean over cell types, k = 5..25%"),
    "kbet_acceptance_k05": ("other", True, "embedding", DAVAE + "; k = 5% of the cell type"),
    "kbet_acceptance_k10": ("other", True, "embedding", DAVAE + "; k = 10% of the cell type"),
    "kbet_acceptance_k15": ("other", True, "embedding", DAVAE + "; k = 15% of the cell type"),
    "kbet_acceptance_k20": ("other", True, "embedding", DAVAE + "; k = 20% of the cell type"),
    "kbet_acceptance_k25": ("other", True, "embedding", DAVAE + "; k = 25% of the cell type"),
    "macro_f1": ("other", True, "labels", SCDREAMER + "; predicted vs true labels of hidden cells"),
    # unsupervised (metrics/unsupervised.py, no labels needed)
    "batch_cluster_nmi": ("other", True, "embedding", SCCRAFT + "; per-batch clusters kept after integration"),
    "batch_cluster_ari": ("other", True, "embedding", SCCRAFT + "; per-batch clusters kept after integration"),
}

# name -> (reference implementation, our deliberate differences from it). Shared by every
# kNN metric: the kNN search is exact (scikit-learn brute force) up to ``exact_max_cells``
# cells and pynndescent above (scib-metrics: always pynndescent). The README's "Metrics"
# table repeats these strings (tests/test_metrics.py checks that it does).
_LIBRARY_ASW = "above asw_max_cells (50000) cells, a stratified label x batch subsample"
_GRAPH_LISI = ("graph-only outputs: scib's graph LISI (90 nearest cells by shortest path on the method's graph; "
               "scib-metrics has no graph input)")
_ISOLATED = ("isolated labels as scib >= 1.1.6: none when every label is in every batch, the metric then NA "
             "(option isolated_label_reference: scib_metrics counts every label)")
_REFERENCE: dict[str, tuple[str, str]] = {
    "nmi": ("scib_metrics.nmi_ari_cluster_labels_leiden (optimized resolution) on the 15-NN graph",
            "none (the same Leiden clusterings, built once and shared)"),
    "ari": ("scib_metrics.nmi_ari_cluster_labels_leiden (optimized resolution) on the 15-NN graph",
            "none (the same Leiden clusterings, built once and shared)"),
    "asw_label": ("scib_metrics.silhouette_label", _LIBRARY_ASW),
    "clisi": ("scib_metrics.clisi_knn on the 90-NN graph", _GRAPH_LISI),
    "isolated_label_asw": ("scib_metrics.isolated_labels", _ISOLATED + "; " + _LIBRARY_ASW),
    "isolated_label_f1": ("scib.me.isolated_labels_f1 (scib 1.x; not in scib-metrics)",
                          "clusters: the shared igraph Leiden clusterings at 0.2..2.0 (scib: scanpy's Leiden at the "
                          "same resolutions); " + _ISOLATED),
    "asw_batch": ("scib_metrics.silhouette_batch", "labels and batches passed as str arrays; " + _LIBRARY_ASW),
    "bras": ("scib_metrics.bras", _LIBRARY_ASW),
    "ilisi": ("scib_metrics.ilisi_knn on the 90-NN graph", _GRAPH_LISI),
    "ilisi_shared": ("scib_metrics.ilisi_knn's scaling of the per-cell iLISI, median over the shared types' cells",
                     "no library restricts iLISI to shared cell types; " + _GRAPH_LISI),
    "ilisi_scaled": ("scib_metrics.ilisi_knn on the 90-NN graph of the standardised embedding",
                     "sysVI scaled with scanpy (same z-scores); exact kNN as for ilisi"),
    "nmi_fixed_scaled": ("sysVI Methods (written here; no library), on the standardised embedding",
                         "Leiden at r = 2 on the standardised embedding's 15-NN graph"),
    "kbet": ("scib_metrics.kbet_per_label on the 50-NN graph",
             "exact kNN on each label's diffusion map (scib-metrics: pynndescent); min(100, n-1) diffusion "
             "components per label (scib-metrics keeps a smaller label's count for all later labels); at most "
             "kbet_max_query_cells (10000) tested neighbourhoods per label; above kbet_max_cells (100000) cells, "
             "a stratified subsample with its own 50-NN graph; graph-only outputs: scib's diffusion to >= 50 "
             "neighbours first (scib.metrics.utils.diffusion_conn)"),
    "graph_connectivity": ("scib.me.graph_connectivity (scib 1.x) on the symmetric 15-NN connectivities",
                           "none; option graph_connectivity_reference: scib_metrics scores the directed 15-NN "
                           "graph as scib-metrics' Benchmarker does (lower values)"),
    "pcr_comparison": ("scib_metrics.pcr_comparison (categorical batch)", "none"),
    "nmi_fixed": ("sysVI Methods (written here; no library)",
                  "Leiden: the shared igraph clustering at r = 2 (sysVI: scanpy's Leiden)"),
    "jaccard": ("sysVI Methods (written here; no library)",
                "Leiden: the shared igraph clustering at r = 2 (sysVI: scanpy's Leiden)"),
    "moransi": ("sysVI Methods; Moran's I by scanpy.metrics.morans_i",
                "gene cutoff an option (sysVI tuned it per dataset); groups above moransi_exact_max_cells (20000) "
                "cells use a pynndescent kNN"),
    "positive_rate": ("iMAP (Wang et al. 2021) positive cells (written here)",
                      "all 50 neighbours of the cell's type (scCRAFT's released code: > 50% of 20 cosine "
                      "neighbours)"),
    "true_positive_rate": ("iMAP (Wang et al. 2021) true-positive cells (written here)",
                           "kBET chi-square on the positive cell's 50 neighbours (scCRAFT's released code: a z-test "
                           "per batch on up to 100 same-type neighbours)"),
    "f1_lisi": ("scCRAFT supplement (written here)",
                "from the scIB-scaled graph iLISI and cLISI (scCRAFT's code: per-label mean bLISI, mean cLISI)"),
    "one_minus_ari_batch": ("DAVAE preprint, after Tran et al. 2020 (written here)",
                            "Leiden clusters at the resolution with the best label NMI"),
    "kbet_acceptance": ("DAVAE preprint; kBET (Buettner et al. 2019) (written here)",
                        "chi-square kBET of up to kbet_max_test_cells (500) cells per type with exact "
                        "neighbours (DAVAE: R kBET, 100 replicates)"),
    "macro_f1": ("scDREAMER (Shree et al. 2023) (written here; sklearn f1_score)", "none"),
    "jaccard_batch_unique": ("sysVI Fig. 4 (written here; no library)",
                             "the per-cell-type Jaccard of `jaccard`, averaged over the cell types found in one "
                             "batch only; NA when there is none"),
    "batch_cluster_nmi": ("scCRAFT Methods (written here; no code released)", "see metrics/unsupervised.py"),
    "batch_cluster_ari": ("scCRAFT Methods (written here; no code released)", "see metrics/unsupervised.py"),
}
for _k in ("k05", "k10", "k15", "k20", "k25"):
    _REFERENCE[f"kbet_acceptance_{_k}"] = _REFERENCE["kbet_acceptance"]

METRIC_SETS: dict[str, dict[str, list[str]]] = {
    "scib": {
        "bio": ["nmi", "ari", "asw_label", "clisi", "isolated_label_asw", "isolated_label_f1"],
        "batch": ["asw_batch", "ilisi", "kbet", "graph_connectivity", "pcr_comparison"],
    },
    "scib_metrics": {  # scib-metrics Benchmarker defaults (BRAS in place of batch ASW)
        "bio": ["isolated_label_asw", "nmi", "ari", "asw_label", "clisi"],
        "batch": ["bras", "ilisi", "kbet", "graph_connectivity", "pcr_comparison"],
    },
    "sysvi": {"bio": ["nmi_fixed", "moransi"], "batch": ["ilisi"]},
    "scdreamer": {
        "bio": ["nmi", "ari", "asw_label"],
        "batch": ["asw_batch", "pcr_comparison", "graph_connectivity", "kbet"],
    },
    "sccraft": {
        "bio": ["nmi", "ari", "asw_label", "clisi"],
        "batch": ["asw_batch", "pcr_comparison", "graph_connectivity", "kbet", "ilisi", "true_positive_rate"],
    },
    "davae": {"bio": ["ari"], "batch": ["one_minus_ari_batch", "kbet_acceptance"]},
}

ALL_METRICS: list[str] = list(_INFO)
# metrics left out of "all" (they cost a second kNN graph and clustering per run); ask by name
OPT_IN: frozenset[str] = frozenset({"ilisi_scaled", "nmi_fixed_scaled"})


def metric_info() -> dict[str, dict[str, object]]:
    """Every metric name -> {"type", "higher_is_better", "needs", "paper", "reference", "differences"}."""
    return {
        name: {"type": t, "higher_is_better": hib, "needs": needs, "paper": paper,
               "reference": _REFERENCE[name][0], "differences": _REFERENCE[name][1]}
        for name, (t, hib, needs, paper) in _INFO.items()
    }


def metric_type(name: str) -> str:
    """``bio``, ``batch`` or ``other`` for a metric name (``other`` for unknown names)."""
    return _INFO.get(name, ("other",))[0]
