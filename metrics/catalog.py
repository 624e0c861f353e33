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
    # scIB set (scib-metrics implementations)
    "nmi": ("bio", True, "graph", SCIB + "; Leiden, resolution optimized over 0.2..2.0"),
    "ari": ("bio", True, "graph", SCIB + "; Leiden, resolution optimized over 0.2..2.0"),
    "asw_label": ("bio", True, "embedding", SCIB),
    "clisi": ("bio", True, "graph", SCIB),
    "isolated_label_asw": ("bio", True, "embedding", SCIB),
    "isolated_label_f1": ("bio", True, "graph", SCIB + " (F1 definition, written here)"),
    "asw_batch": ("batch", True, "embedding", SCIB),
    "bras": ("batch", True, "embedding", "Rautenstrauch & Ohler 2025 (BRAS); scib-metrics"),
    "ilisi": ("batch", True, "graph", SCIB),
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


def metric_info() -> dict[str, dict[str, object]]:
    """Every metric name -> {"type", "higher_is_better", "needs", "paper"}."""
    return {
        name: {"type": t, "higher_is_better": hib, "needs": needs, "paper": paper}
        for name, (t, hib, needs, paper) in _INFO.items()
    }


def metric_type(name: str) -> str:
    """``bio``, ``batch`` or ``other`` for a metric name (``other`` for unknown names)."""
    return _INFO.get(name, ("other",))[0]
