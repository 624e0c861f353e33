"""Score run files: one ``metrics.json`` per run, many runs per process (JIT paid once).

Options (JSON, every key optional; defaults in ``DEFAULT_OPTIONS``):

- ``n_neighbors`` (90): k of the shared kNN graph; subset to 15 (Leiden, graph connectivity)
  and 50 (kBET, positive rates) as scib-metrics' Benchmarker does.
- ``metrics`` ("all" or a list of names from ``metrics.catalog``): "all" is every metric but the
  opt-in ones (``metrics.catalog.OPT_IN``), which ``extra_metrics`` adds by name.
- ``extra_metrics`` ([]): opt-in metrics to compute as well, e.g. ``ilisi_scaled`` and
  ``nmi_fixed_scaled`` (sysVI Fig. 2a: iLISI and NMI fixed on the embedding with each feature
  standardised; one more kNN graph and Leiden clustering per run).
- ``labelled`` (null = auto: false when every label is in ``unknown_labels``): when false,
  every metric that needs cell-type labels is null with reason "dataset unlabelled". When only
  some cells are unlabelled, the metrics that need labels are computed on the labelled cells
  alone (``n_unlabelled`` in metrics.json says how many were left out).
- ``batch_key`` / ``label_key`` ("batch" / "label"): obs columns of the *data* file (truth).
- ``knn_method`` ("auto" | "exact" | "pynndescent"), ``exact_max_cells`` (100000): auto uses
  exact brute-force kNN up to that many cells (no numba JIT), pynndescent above.
- ``n_jobs`` (1): processes for the Leiden resolutions (joblib) and threads for kNN.
- ``asw_max_cells`` (50000; null = always exact): the silhouettes (label ASW, isolated-label ASW,
  batch ASW, BRAS) are exact pairwise computations, quadratic in cells; above this many cells
  they use a stratified (label x batch) subsample of about this size (its size is recorded in
  ``extra.asw_cells``). Up to 50k cells they are exact, as in scib-metrics.
- ``leiden_seed`` (42, scib-metrics'), ``nmi_fixed_resolution`` (2.0, sysVI).
- ``kbet_max_query_cells`` (10000; null = every cell): scIB kBET tests at most this many
  neighbourhoods per cell type (seeded subsample; see ``metrics/kbet.py``).
- ``kbet_max_cells`` (100000; null = all): above it, scIB kBET of an embedding runs on a stratified
  (label x batch) subsample of about this size with its own 50-NN graph (``extra.kbet_cells``).
- ``isolated_label_reference``, ``graph_connectivity_reference`` ("scib" | "scib_metrics"): the
  library followed where the two differ (``metrics/catalog.py``); isolated labels in
  ``extra.isolated_labels``.
- ``positive_k`` (50), ``alpha`` (0.05): iMAP positive / true-positive rates.
- ``kbet_fractions`` ([0.05..0.25]), ``kbet_max_test_cells`` (500): DAVAE kBET over sizes.
- ``moransi_min_cells`` (500), ``moransi_min_frac_expressed`` (0.1), ``moransi_cutoff`` (0.2),
  ``moransi_max_genes`` (150), ``moransi_exclude`` (regex of doublet labels): sysVI Moran's I.
- ``moransi_exact_max_cells`` (20000; null = always exact): larger Moran's I groups get a
  pynndescent kNN (their number in ``extra.moransi_approx_knn_groups``).
- ``unsupervised_resolution`` (0.5): passed to ``metrics.unsupervised``.
- ``seed`` (0): subsampling and test-cell sampling.

Graph-only runs (obsp connectivities, no embedding or corrected X) get the graph metrics;
metrics that need an embedding are null with reason "graph-only output: needs an embedding".
A run whose record says ``failed`` gets every metric null with reason "run failed".
"""

from __future__ import annotations

import os
import re
import time
import traceback
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from metrics.catalog import ALL_METRICS, OPT_IN, metric_info
from metrics.json_output import write_json_atomic
from metrics.run_inputs import DataCache, read_run, run_embedding

DEFAULT_OPTIONS: dict[str, Any] = {
    "n_neighbors": 90, "metrics": "all", "labelled": None, "batch_key": "batch", "label_key": "label",
    "unknown_labels": ["unknown", "Unknown", "nan", "NaN", ""], "knn_method": "auto",
    "exact_max_cells": 100_000, "n_jobs": 1, "asw_max_cells": 50_000, "leiden_seed": 42,
    "nmi_fixed_resolution": 2.0, "positive_k": 50, "alpha": 0.05,
    "kbet_fractions": [0.05, 0.10, 0.15, 0.20, 0.25], "kbet_max_test_cells": 500,
    "kbet_max_query_cells": 10_000, "kbet_max_cells": 100_000, "isolated_label_reference": "scib",
    "graph_connectivity_reference": "scib", "moransi_exact_max_cells": 20_000,
    "moransi_min_cells": 500, "moransi_min_frac_expressed": 0.1, "moransi_cutoff": 0.2,
    "moransi_max_genes": 150, "moransi_exclude": r"doublet|\+", "unsupervised_resolution": 0.5,
    "seed": 0, "per_cell_decimals": 3, "extra_metrics": [],
}
KBET_SIZE_METRICS = {0.05: "kbet_acceptance_k05", 0.10: "kbet_acceptance_k10", 0.15: "kbet_acceptance_k15",
                     0.20: "kbet_acceptance_k20", 0.25: "kbet_acceptance_k25"}
# metrics computable without cell-type labels
LABEL_FREE = {"ilisi", "pcr_comparison", "one_minus_ari_batch", "batch_cluster_nmi", "batch_cluster_ari"}


def enable_jax_cache() -> None:
    """Persistent JAX compilation cache in $BENCH_CACHE_DIR/jax (skips recompiling in later processes)."""
    cache = os.environ.get("BENCH_CACHE_DIR")
    if not cache:
        return
    import jax

    path = Path(cache) / "jax_compilation_cache"
    path.mkdir(parents=True, exist_ok=True)
    jax.config.update("jax_compilation_cache_dir", str(path))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", -1)


def resolve_options(options: dict | None) -> dict[str, Any]:
    """Defaults overlaid with ``options``; unknown keys and unknown metric names are errors."""
    options = dict(options or {})
    unknown = sorted(set(options) - set(DEFAULT_OPTIONS))
    if unknown:
        raise ValueError(f"unknown metrics option(s): {', '.join(unknown)}; known: {', '.join(DEFAULT_OPTIONS)}")
    opts = {**DEFAULT_OPTIONS, **options}
    if opts["metrics"] == "all":
        opts["metrics"] = [m for m in ALL_METRICS if m not in OPT_IN]
    for key in ("metrics", "extra_metrics"):
        bad = sorted(set(opts[key]) - set(ALL_METRICS))
        if bad:
            raise ValueError(f"unknown metric name(s) in options '{key}': {', '.join(bad)}; "
                             f"known: {', '.join(ALL_METRICS)}")
    opts["metrics"] = list(dict.fromkeys([*opts["metrics"], *opts["extra_metrics"]]))
    for key in ("isolated_label_reference", "graph_connectivity_reference"):
        if opts[key] not in ("scib", "scib_metrics"):
            raise ValueError(f"option {key} must be 'scib' or 'scib_metrics', got {opts[key]!r}")
    if int(opts["n_neighbors"]) < 50:
        raise ValueError(f"option n_neighbors must be >= 50 (kBET uses 50), got {opts['n_neighbors']}")
    return opts


def _null_result(names, reason: str) -> tuple[dict, dict]:
    return {m: None for m in names}, {m: reason for m in names}


class _Scorer:
    """Computes the requested metrics of one run, sharing kNN, clusterings and silhouettes."""

    def __init__(self, data: DataCache, run, opts: dict[str, Any]):
        o = self.opts = opts
        self.data = data
        obs_names = run.obs_names
        pos = data.adata.obs_names.get_indexer(obs_names)
        if (pos < 0).any():
            missing = obs_names[pos < 0][:3].tolist()
            raise ValueError(f"run cells not in the data file {data.path}: e.g. {missing}")
        self.cells = pos
        obs = data.adata.obs.iloc[pos]
        self.batch = obs[o["batch_key"]].astype(str).to_numpy()
        self.labels = obs[o["label_key"]].astype(str).to_numpy()
        self.X_pre = np.asarray(data.adata.obsm["X_pca"][pos], dtype=np.float32)
        self.run = run
        self.emb, self.kind = run_embedding(run)
        self.unlabelled = np.isin(self.labels, o["unknown_labels"])
        labelled = o["labelled"]
        if labelled is None:
            labelled = not self.unlabelled.all()
        self.labelled = bool(labelled)
        self.timing: dict[str, float] = {}
        self._nested: list[float] = []
        self._cache: dict[str, Any] = {}
        if np.unique(self.batch).size < 2:
            raise ValueError(f"data file {data.path}: column {o['batch_key']!r} has a single batch")

    @contextmanager
    def timed(self, name: str):
        """Exclusive seconds of ``name``: shared steps computed inside it are timed on their own."""
        self._nested.append(0.0)
        t0 = time.perf_counter()
        try:
            yield
        finally:
            total = time.perf_counter() - t0
            inner = self._nested.pop()
            if self._nested:
                self._nested[-1] += total
            self.timing[name] = round(self.timing.get(name, 0.0) + total - inner, 4)

    def shared(self, name: str, fn):
        if name not in self._cache:
            with self.timed(name):
                self._cache[name] = fn()
        return self._cache[name]

    # ---- shared structures ----
    def nbrs(self):
        from metrics import neighbors as nb

        o = self.opts

        def build():
            if self.emb is not None:
                return nb.knn(self.emb, int(o["n_neighbors"]), method=o["knn_method"],
                              exact_max_cells=int(o["exact_max_cells"]), seed=int(o["seed"]),
                              n_jobs=int(o["n_jobs"]))
            dist = self.run.obsp["distances"] if "distances" in self.run.obsp else None
            return nb.graph_neighbors(self.run.obsp["connectivities"], dist, int(o["n_neighbors"]))
        return self.shared("knn", build)

    def conn15(self):
        return self.shared("connectivities_k15", lambda: self.nbrs().subset_neighbors(15).knn_graph_connectivities)

    def clusterings(self):
        from metrics.scib_set import LEIDEN_RESOLUTIONS, leiden_clusterings

        res = sorted(set(LEIDEN_RESOLUTIONS) | {float(self.opts["nmi_fixed_resolution"])})
        return self.shared("leiden_clusterings", lambda: leiden_clusterings(
            self.conn15(), res, seed=int(self.opts["leiden_seed"]), n_jobs=int(self.opts["n_jobs"])))

    def asw_subset(self):
        from metrics.scib_set import stratified_subsample

        def subsample():
            idx = stratified_subsample(self.labels, self.batch, self.opts["asw_max_cells"], int(self.opts["seed"]))
            if idx.size < self.labels.size:
                self.extra["asw_cells"] = int(idx.size)
            return idx
        return self.shared("asw_subsample", subsample)

    def silhouette(self):
        from metrics.scib_set import label_silhouette

        idx = self.asw_subset()
        return self.shared("label_silhouette", lambda: label_silhouette(self.emb[idx], self.labels[idx]))

    def isolated(self) -> list[str]:
        """The isolated labels (recorded in extra); _NotApplicable when there is none."""
        from metrics.scib_set import isolated_labels_list

        iso = self.extra["isolated_labels"] = isolated_labels_list(
            self.labels, self.batch, reference=self.opts["isolated_label_reference"])
        if not iso:
            raise _NotApplicable(f"no isolated label: every label is in all {np.unique(self.batch).size} batches "
                                 "(scib; option isolated_label_reference='scib_metrics' counts every label)")
        return iso

    def lisi(self, which: str):
        from metrics.scib_set import lisi_per_cell

        values = self.batch if which == "ilisi" else self.labels
        return self.shared(f"lisi_{which}_per_cell", lambda: lisi_per_cell(self.nbrs(), values))

    # ---- metric groups: each returns {metric: value} ----
    def grid_clusterings(self) -> dict[float, np.ndarray]:
        """The clusterings at scib-metrics' resolution grid (without an extra NMI-fixed resolution)."""
        from metrics.scib_set import LEIDEN_RESOLUTIONS

        return {r: c for r, c in self.clusterings().items() if r in set(LEIDEN_RESOLUTIONS)}

    def grid_scores(self):
        """(NMI, ARI) of the labels per grid resolution, shared by NMI/ARI and 1 - ARI(batch)."""
        from metrics.scib_set import nmi_ari_per_resolution

        return self.shared("leiden_label_scores", lambda: nmi_ari_per_resolution(self.grid_clusterings(), self.labels))

    def g_nmi_ari(self):
        from metrics.scib_set import nmi_ari_optimized

        return nmi_ari_optimized(self.grid_clusterings(), self.labels, scores=self.grid_scores())

    def g_nmi_fixed(self):
        from metrics.paper_metrics import nmi_fixed_and_jaccard

        nmi, jac = nmi_fixed_and_jaccard(self.clusterings()[float(self.opts["nmi_fixed_resolution"])], self.labels)
        self.extra["jaccard_per_label"] = {k: round(v, 4) for k, v in jac.items()}
        return {"nmi_fixed": nmi, "jaccard": float(np.mean(list(jac.values())))}

    def g_jaccard_batch_unique(self):
        from metrics.paper_metrics import batch_unique_labels, nmi_fixed_and_jaccard

        unique = batch_unique_labels(self.labels, self.batch)
        if not unique:
            raise _NotApplicable("no cell type is found in one batch only")
        _, jac = nmi_fixed_and_jaccard(self.clusterings()[float(self.opts["nmi_fixed_resolution"])], self.labels)
        return {"jaccard_batch_unique": float(np.mean([jac[k] for k in unique]))}

    def g_asw_label(self):
        from metrics.scib_set import asw_label_from_silhouette

        return {"asw_label": asw_label_from_silhouette(self.silhouette())}

    def g_isolated_asw(self):
        from metrics.scib_set import isolated_label_asw_from_silhouette

        iso = self.isolated()
        idx = self.asw_subset()
        return {"isolated_label_asw": isolated_label_asw_from_silhouette(self.silhouette(), self.labels[idx], iso)}

    def g_isolated_f1(self):
        from metrics.paper_metrics import isolated_label_f1

        iso = self.isolated()
        return {"isolated_label_f1": isolated_label_f1(self.grid_clusterings(), self.labels, iso)}

    def g_clisi(self):
        from metrics.scib_set import clisi_from_per_cell

        return {"clisi": clisi_from_per_cell(self.lisi("clisi"), np.unique(self.labels).size)}

    def g_ilisi(self):
        from metrics.scib_set import ilisi_from_per_cell

        return {"ilisi": ilisi_from_per_cell(self.lisi("ilisi"), np.unique(self.batch).size)}

    def g_ilisi_shared(self):
        from metrics.paper_metrics import shared_labels
        from metrics.scib_set import ilisi_from_per_cell

        shared = shared_labels(self.labels, self.batch)
        if not shared:
            raise _NotApplicable("no cell type is present in every batch")
        self.extra["ilisi_shared_labels"] = shared
        keep = np.isin(self.labels, shared)
        return {"ilisi_shared": ilisi_from_per_cell(self.lisi("ilisi")[keep], np.unique(self.batch).size)}

    def g_scaled_embedding(self):
        """iLISI and NMI fixed on the embedding with every feature standardised (sysVI Fig. 2a,
        Suppl. Note S1): a higher KL weight that only silences latent dimensions loses its
        effect here, since the silenced dimensions are scaled back up."""
        from metrics import neighbors as nb
        from metrics.paper_metrics import nmi_fixed_and_jaccard
        from metrics.scib_set import ilisi_from_per_cell, leiden_clusterings, lisi_per_cell

        o = self.opts
        emb = np.asarray(self.emb, dtype=np.float64)
        sd = emb.std(axis=0)
        z = ((emb - emb.mean(axis=0)) / np.where(sd > 0, sd, 1.0)).astype(np.float32)
        nbrs = nb.knn(z, int(o["n_neighbors"]), method=o["knn_method"], exact_max_cells=int(o["exact_max_cells"]),
                      seed=int(o["seed"]), n_jobs=int(o["n_jobs"]))
        res = float(o["nmi_fixed_resolution"])
        clusters = leiden_clusterings(nbrs.subset_neighbors(15).knn_graph_connectivities, [res],
                                      seed=int(o["leiden_seed"]))[res]
        return {"ilisi_scaled": ilisi_from_per_cell(lisi_per_cell(nbrs, self.batch), np.unique(self.batch).size),
                "nmi_fixed_scaled": nmi_fixed_and_jaccard(clusters, self.labels)[0]}

    def g_f1_lisi(self):
        from metrics.paper_metrics import f1_lisi

        return {"f1_lisi": f1_lisi(self.metric_value("ilisi"), self.metric_value("clisi"))}

    def g_asw_batch(self):
        from scib_metrics import silhouette_batch

        idx = self.asw_subset()
        return {"asw_batch": float(silhouette_batch(self.emb[idx], self.labels[idx], self.batch[idx]))}

    def g_bras(self):
        from scib_metrics import bras

        idx = self.asw_subset()
        return {"bras": float(bras(self.emb[idx], self.labels[idx], self.batch[idx]))}

    def g_kbet(self):
        from metrics.graph_output import diffusion_connectivities
        from metrics.kbet import kbet_per_label
        from metrics.neighbors import knn
        from metrics.scib_set import stratified_subsample

        o, cells = self.opts, np.arange(self.labels.size)
        if self.emb is None:  # scib: diffusion steps on the method's graph to >= 50 neighbours per cell
            conn = diffusion_connectivities(self.nbrs().knn_graph_connectivities, min_k=50)
        else:
            cells = stratified_subsample(self.labels, self.batch, o["kbet_max_cells"], int(o["seed"]))
            if cells.size == self.labels.size:
                conn = self.nbrs().subset_neighbors(50).knn_graph_connectivities
            else:  # the per-label diffusion maps are the costly step: a subsample with its own graph
                self.extra["kbet_cells"] = int(cells.size)
                conn = knn(self.emb[cells], 50, method=o["knn_method"], exact_max_cells=int(o["exact_max_cells"]),
                           seed=int(o["seed"]), n_jobs=int(o["n_jobs"])).knn_graph_connectivities
        return {"kbet": kbet_per_label(conn, self.batch[cells], self.labels[cells],
                                       max_query_cells=o["kbet_max_query_cells"], seed=int(o["seed"]))}

    def g_graph_connectivity(self):
        from scib_metrics import graph_connectivity as directed_graph_connectivity

        from metrics.scib_set import graph_connectivity

        if self.opts["graph_connectivity_reference"] == "scib_metrics":
            value = directed_graph_connectivity(self.nbrs().subset_neighbors(15), self.labels)
        else:
            value = graph_connectivity(self.conn15(), self.labels)
        return {"graph_connectivity": float(value)}

    def g_pcr(self):
        from scib_metrics import pcr_comparison

        return {"pcr_comparison": float(pcr_comparison(self.X_pre, self.emb, self.batch, categorical=True))}

    def g_positive(self):
        from metrics.neighbors import GraphNeighbors
        from metrics.paper_metrics import knn_adjacency, positive_true_positive

        k = int(self.opts["positive_k"])
        nbrs = self.nbrs()
        # a graph-only output: the method's own neighbourhoods, not the diffusion-map lists
        adj = nbrs.knn_graph_distances if isinstance(nbrs, GraphNeighbors) else knn_adjacency(nbrs.indices[:, :k + 1])
        pos, tp = positive_true_positive(adj, self.labels, self.batch, alpha=float(self.opts["alpha"]))
        return {"positive_rate": float(pos.mean()), "true_positive_rate": float(tp.mean())}

    def g_one_minus_ari_batch(self):
        from metrics.paper_metrics import one_minus_ari_batch

        cl = self.clusterings()
        if self.labelled:  # the clustering at the resolution chosen for label NMI
            if self.unlabelled.any():  # the resolution chosen on the labelled cells only
                from sklearn.metrics import normalized_mutual_info_score

                known = ~self.unlabelled
                best = max(self.grid_clusterings(),
                           key=lambda r: normalized_mutual_info_score(self.labels[known], cl[r][known]))
            else:
                scores = self.grid_scores()
                best = max(self.grid_clusterings(), key=lambda r: scores[r][0])
        else:
            best = 1.0
        self.extra["one_minus_ari_batch_resolution"] = best
        return {"one_minus_ari_batch": one_minus_ari_batch(cl[best], self.batch)}

    def g_kbet_sizes(self):
        from metrics.paper_metrics import kbet_acceptance_over_sizes

        fr = [float(f) for f in self.opts["kbet_fractions"]]
        res = kbet_acceptance_over_sizes(self.emb, self.labels, self.batch, fractions=fr,
                                         alpha=float(self.opts["alpha"]),
                                         max_test_cells=int(self.opts["kbet_max_test_cells"]),
                                         seed=int(self.opts["seed"]))
        out = {"kbet_acceptance": float(np.nanmean(list(res.values())))}
        for f, v in res.items():
            name = KBET_SIZE_METRICS.get(round(f, 2))
            if name:
                out[name] = v
        self.extra["kbet_acceptance_by_fraction"] = {str(f): v for f, v in res.items()}
        return out

    def g_moransi(self):
        from metrics.moransi import moransi_preservation

        o = self.opts
        ref = self.data.moransi_reference(self.cells)
        if not ref:
            raise _NotApplicable(f"no sample x cell-type group with >= {o['moransi_min_cells']} cells "
                                 "and genes above the Moran's I cutoff")
        approx = sum(bool(g["approx_knn"]) for g in ref)
        if approx:
            self.extra["moransi_approx_knn_groups"] = approx
        X = self.data.adata.X[self.cells] if self.cells.size != self.data.adata.n_obs else self.data.adata.X
        return {"moransi": moransi_preservation(ref, X, self.emb, exact_max_cells=o["moransi_exact_max_cells"],
                                                seed=int(o["seed"]))}

    def g_macro_f1(self):
        from metrics.paper_metrics import macro_f1

        obs = self.run.obs
        if "predicted_label" not in obs or "label_hidden" not in obs:
            raise _NotApplicable("run has no obs 'predicted_label'/'label_hidden' (not a semi-supervised run)")
        hidden = obs["label_hidden"].astype(bool).to_numpy()
        if not hidden.any():
            raise _NotApplicable("no cell had its label hidden")
        return {"macro_f1": macro_f1(self.labels, obs["predicted_label"].astype(str).to_numpy(), hidden)}

    def g_unsupervised(self):
        from metrics.unsupervised import per_batch_cluster_conservation

        # integrated clusters on the shared 15-NN graph (a graph output: its own graph)
        graph = self.run.obsp["connectivities"] if self.emb is None else self.conn15()
        res = per_batch_cluster_conservation(self.X_pre, batch=self.batch,
                                             resolution=float(self.opts["unsupervised_resolution"]),
                                             seed=int(self.opts["seed"]), graph=graph,
                                             pseudo=self.data.batch_pseudo_labels(self.cells))
        return {k: float(res[k]) for k in ("batch_cluster_nmi", "batch_cluster_ari")}

    GROUPS = {
        "g_nmi_ari": ["nmi", "ari"], "g_nmi_fixed": ["nmi_fixed", "jaccard"],
        "g_jaccard_batch_unique": ["jaccard_batch_unique"], "g_asw_label": ["asw_label"],
        "g_isolated_asw": ["isolated_label_asw"], "g_isolated_f1": ["isolated_label_f1"],
        "g_clisi": ["clisi"], "g_ilisi": ["ilisi"], "g_ilisi_shared": ["ilisi_shared"],
        "g_scaled_embedding": ["ilisi_scaled", "nmi_fixed_scaled"], "g_f1_lisi": ["f1_lisi"], "g_asw_batch": ["asw_batch"],
        "g_bras": ["bras"], "g_kbet": ["kbet"], "g_graph_connectivity": ["graph_connectivity"],
        "g_pcr": ["pcr_comparison"], "g_positive": ["positive_rate", "true_positive_rate"],
        "g_one_minus_ari_batch": ["one_minus_ari_batch"],
        "g_kbet_sizes": ["kbet_acceptance", *KBET_SIZE_METRICS.values()], "g_moransi": ["moransi"],
        "g_macro_f1": ["macro_f1"], "g_unsupervised": ["batch_cluster_nmi", "batch_cluster_ari"],
    }

    def metric_value(self, name: str):
        """A metric already computed in this run (or computed now), NaN when it is null."""
        if name not in self.values:
            self.compute_group(next(g for g, ms in self.GROUPS.items() if name in ms))
        v = self.values.get(name)
        return float("nan") if v is None else v

    def compute_group(self, group: str) -> None:
        names = self.GROUPS[group]
        info = metric_info()
        reason = None
        if not self.labelled and any(m not in LABEL_FREE for m in names):
            reason = "dataset unlabelled"
        elif self.emb is None and any(info[m]["needs"] == "embedding" for m in names) and group != "g_unsupervised":
            reason = "graph-only output: needs an embedding"
        if reason:
            for m in names:
                self.values[m], self.reasons[m] = None, reason
            return
        try:
            with self.timed(group[2:]):
                out = getattr(self, group)()
        except _NotApplicable as exc:
            out, reason = {}, str(exc)
        except Exception as exc:  # a metric failing must not lose the others; the reason is recorded
            out, reason = {}, f"error: {type(exc).__name__}: {exc}"
            self.extra.setdefault("tracebacks", {})[group[2:]] = traceback.format_exc(limit=5)
        for m in names:
            v = out.get(m)
            if v is not None and not np.isfinite(v):
                self.values[m], self.reasons[m] = None, reason or "not defined for this data (e.g. no isolated label)"
            elif v is None:
                self.values[m], self.reasons[m] = None, reason or "not computed"
            else:
                self.values[m] = float(v)

    def label_scorer(self) -> _Scorer | None:
        """A scorer of the labelled cells only, for the metrics that need labels, when some (not all)
        cells are unlabelled: as scib leaves unknown labels out, an 'unknown' cell type must not
        count as a type (its own kNN graph and clusterings: the unlabelled cells are not there)."""
        if not self.labelled or not self.unlabelled.any():
            return None
        sub = _Scorer(self.data, self.run[~self.unlabelled].copy(), self.opts)
        sub.values, sub.reasons, sub.extra, sub.timing = self.values, self.reasons, self.extra, self.timing
        return sub

    def score(self) -> dict[str, Any]:
        self.values: dict[str, float | None] = {}
        self.reasons: dict[str, str] = {}
        self.extra: dict[str, Any] = {}
        wanted = self.opts["metrics"]
        label_scorer = self.label_scorer()
        for group, names in self.GROUPS.items():
            if any(m in wanted for m in names) and not all(m in self.values for m in names):
                needs_labels = any(m not in LABEL_FREE for m in names)
                (label_scorer if label_scorer is not None and needs_labels else self).compute_group(group)
        metrics = {m: self.values.get(m) for m in wanted}
        reasons = {m: self.reasons[m] for m in wanted if metrics[m] is None and m in self.reasons}
        per_cell = {}
        d = int(self.opts["per_cell_decimals"])
        for which in ("ilisi", "clisi"):
            cache = next((c for c in (self._cache, label_scorer._cache if label_scorer else {})
                          if f"lisi_{which}_per_cell" in c), None)
            if cache is not None:
                per_cell[which] = np.round(np.asarray(cache[f"lisi_{which}_per_cell"], dtype=np.float64), d).tolist()
        return {"metrics": metrics, "na_reasons": reasons, "per_cell": per_cell, "timing": self.timing,
                "extra": self.extra, "output": self.kind, "labelled": self.labelled, "n_cells": int(self.cells.size),
                "n_unlabelled": int(self.unlabelled.sum())}


class _NotApplicable(Exception):
    """A metric that does not apply to this run (the message is the na_reason)."""


def _identity(run_path: Path, record: dict, data: DataCache) -> dict[str, Any]:
    """dataset/method/setting/seed from the run record, else from the runs/{d}/{m}/{s}/seed{n} path."""
    ident = {k: record.get(k) for k in ("dataset", "method", "setting", "seed", "label_missing")}
    parts = run_path.parent
    m = re.fullmatch(r"seed(\d+)", parts.name)
    if m and len(parts.parents) >= 3:
        ident["seed"] = ident["seed"] if ident["seed"] is not None else int(m.group(1))
        ident["setting"] = ident["setting"] or parts.parent.name
        ident["method"] = ident["method"] or parts.parents[1].name
        ident["dataset"] = ident["dataset"] or parts.parents[2].name
    if not ident["dataset"]:
        ds = data.adata.uns.get("dataset", {})
        ident["dataset"] = ds.get("name") if isinstance(ds, dict) else None
    return ident


def score_run(run_path: str | Path, data: DataCache, opts: dict[str, Any]) -> dict[str, Any]:
    """The metrics.json content of one run (never raises for a bad run: it is recorded as failed)."""
    run_path = Path(run_path)
    t0 = time.perf_counter()
    names = opts["metrics"]
    try:
        run, record = read_run(run_path)
    except Exception as exc:
        vals, reasons = _null_result(names, "run file unreadable")
        return {"dataset": None, "method": None, "setting": None, "seed": None, "label_missing": None,
                "status": "failed", "error": f"{type(exc).__name__}: {exc}", "metrics": vals,
                "na_reasons": reasons, "per_cell": {}, "timing": {}}
    ident = _identity(run_path, record, data)
    if record.get("status") != "ok":
        vals, reasons = _null_result(names, "run failed")
        return {**ident, "status": "failed", "error": record.get("error") or "run status is not ok",
                "metrics": vals, "na_reasons": reasons, "per_cell": {}, "timing": {}}
    data.check()  # outside the try: a bad data file fails the job (every run would fail alike)
    try:
        result = _Scorer(data, run, opts).score()
    except Exception as exc:  # the run's outputs are unusable: recorded, the batch goes on
        vals, reasons = _null_result(names, "run output unusable")
        return {**ident, "status": "failed", "error": f"{run_path}: {type(exc).__name__}: {exc}",
                "metrics": vals, "na_reasons": reasons, "per_cell": {}, "timing": {},
                "traceback": traceback.format_exc(limit=8)}
    result["timing"]["total"] = round(time.perf_counter() - t0, 4)
    return {**ident, "status": "ok", "error": "", **result}


def score_many(data_path: str | Path, run_paths: list, out_paths: list, options: dict | None = None) -> list[dict]:
    """Score each run against one data file and write each ``metrics.json``; returns the results."""
    if len(run_paths) != len(out_paths):
        raise ValueError(f"--runs has {len(run_paths)} files but --out has {len(out_paths)}")
    opts = resolve_options(options)
    enable_jax_cache()
    data = DataCache(data_path, opts)
    results = []
    for run_path, out_path in zip(run_paths, out_paths):
        res = score_run(run_path, data, opts)
        write_json_atomic(res, out_path)
        results.append(res)
    return results
