"""The systems scenarios (datasets/simulate_systems.py) can test sysVI's claims either way.

sysVI's claims are about substantial, cell-type-specific system effects ("cVAE was unable to
batch-correct some cell types"). These tests show that the simulated data has them: batch
separation before integration at least as large as the paper's cross-system datasets
(Fig. 1c), a cVAE at KL weight 1 that leaves the most affected shared cell type unmixed
between the systems, and a method that does mix it, so a claim about mixing can be won or lost.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from datasets.simulate_systems import SystemsParams, simulate_systems, simulate_systems_counts

REPO = Path(__file__).resolve().parents[1]
# sysVI Fig. 1c (the released figure, batch_strength_plot.ipynb): per cell type, distances between
# samples of different systems are ~10-40 against ~1-10 within a system; medians about 3-5 times.
PAPER_SYSTEM_RATIO = 3.0
SMALL = {"n_cells": 900, "n_genes": 2000}
SMALL_HVG = 600


def per_type_system_ilisi(emb: np.ndarray, adata, k: int = 30) -> dict[str, float]:
    """Median per-cell iLISI of the system (1 = unmixed, 2 = fully mixed) within each shared type."""
    import scib_metrics
    from scib_metrics.nearest_neighbors import NeighborsResults
    from sklearn.neighbors import NearestNeighbors

    out = {}
    for t in adata.obs["label"].cat.categories:
        cells = (adata.obs["label"] == t).to_numpy()
        if adata.obs["system"][cells].nunique() < 2:
            continue
        dist, idx = NearestNeighbors(n_neighbors=k).fit(emb[cells]).kneighbors(emb[cells])
        codes = adata.obs["system"][cells].cat.codes.to_numpy()
        out[t] = float(np.median(scib_metrics.lisi_knn(NeighborsResults(indices=idx, distances=dist), codes)))
    return out


@pytest.fixture(scope="module")
def systems_data():
    from datasets.preprocess import preprocess

    raw = simulate_systems("systems", seed=1, **SMALL)
    return preprocess(raw, name="systems", batch_key="batch", label_key="celltype", system_key="system",
                      counts_integer=True, n_hvg=SMALL_HVG, seed=0)


def test_batches_nest_in_systems_and_the_seed_decides():
    a = simulate_systems("systems", seed=3, n_cells=200, n_genes=300)
    b = simulate_systems("systems", seed=3, n_cells=200, n_genes=300)
    c = simulate_systems("systems", seed=4, n_cells=200, n_genes=300)
    assert (a.X != b.X).nnz == 0 and (a.X != c.X).nnz > 0
    pairs = set(zip(a.obs["batch"], a.obs["system"]))
    assert pairs == {("S1B1", "S1"), ("S1B2", "S1"), ("S2B1", "S2"), ("S2B2", "S2")}
    assert a.X.dtype == np.int32 and a.X.min() >= 0
    # the nuclei-like second system has fewer counts
    lib = np.asarray(a.X.sum(1)).ravel()
    assert np.median(lib[a.obs["system"] == "S2"]) < 0.75 * np.median(lib[a.obs["system"] == "S1"])


def test_system_effect_differs_by_cell_type():
    """Without a system effect the two systems share each type's expression; with it, the most
    affected type moves further between systems than the least affected one."""
    def shift(params, cell_type):
        ad = simulate_systems_counts(params, seed=2)
        X = np.log1p(ad.X.toarray() / ad.X.sum(1).A * 1e4)
        t = (ad.obs["celltype"] == cell_type).to_numpy()
        s1, s2 = t & (ad.obs["system"] == "S1").to_numpy(), t & (ad.obs["system"] == "S2").to_numpy()
        return float(np.linalg.norm(X[s1].mean(0) - X[s2].mean(0)))

    params = SystemsParams(n_cells=1200, n_genes=500)
    effect = simulate_systems_counts(params, seed=2).obs.groupby("celltype", observed=True)["system_effect"].first()
    strong, weak = effect.idxmax(), effect.idxmin()
    none = SystemsParams(n_cells=1200, n_genes=500, system_strength=0.0)
    assert shift(params, strong) > 2 * shift(params, weak)
    assert shift(params, strong) > 3 * shift(none, strong)


def test_systems_unique_keeps_one_type_per_system():
    full = simulate_systems("systems", seed=5, n_cells=600, n_genes=300)
    unique = simulate_systems("systems-unique", seed=5, n_cells=600, n_genes=300)
    table = unique.obs.groupby(["celltype", "system"], observed=False).size().unstack()
    assert table.loc["Type5", "S2"] == 0 and table.loc["Type6", "S1"] == 0
    assert (table.drop(["Type5", "Type6"]) > 0).all().all()
    # the shared types keep exactly their cells of the full scenario
    shared = ~full.obs["celltype"].isin(["Type5", "Type6"]).to_numpy()
    kept = unique[~unique.obs["celltype"].isin(["Type5", "Type6"]).to_numpy()]
    assert (full[shared].X != kept.X).nnz == 0
    with pytest.raises(ValueError, match="unknown systems scenario"):
        simulate_systems("systems-rare")


def test_batch_strength_at_least_the_papers(systems_data):
    from metrics.batch_strength import batch_strength

    # groups of >= 25 cells (sysVI: 50) so that this small dataset's types count
    row = batch_strength(systems_data.obsm["X_pca"], systems_data.obs["batch"], systems_data.obs["label"],
                         systems_data.obs["system"], min_cells=25)
    assert row["n_shared_types"] >= 4
    assert row["system_ratio"] >= PAPER_SYSTEM_RATIO
    assert row["separation"] > 1.0  # batch means more than one cell-to-mean distance apart
    from reports.trust import strength_text

    assert f"between- / within-system distance {row['system_ratio']:.1f}" in strength_text(pd.Series(row))


def test_cvae_leaves_a_shared_type_unmixed_that_another_model_mixes(systems_data):
    from methods import registry, sysvi

    def embed(name, **params):
        merged = registry.merge_params(name, {"max_epochs": 200, **params})
        return sysvi.integrate(systems_data, batch_key="batch", label_key="label", params=merged, seed=0,
                               device="cpu").embedding

    cvae = per_type_system_ilisi(embed("cvae", kl_weight=1.0), systems_data)
    worst = min(cvae, key=cvae.get)
    assert cvae[worst] < 1.15  # near the minimum of 1: the type stays apart by system
    assert max(cvae.values()) > 1.4  # while mildly affected types do mix
    # a higher KL weight mixes it (sysVI Fig. 2a: at the cost of biology, which this test leaves aside)
    mixing = per_type_system_ilisi(embed("cvae", kl_weight=10.0), systems_data)
    assert mixing[worst] > cvae[worst] + 0.2


def test_config_passes_the_system_key(tmp_path):
    cfg = yaml.safe_load((REPO / "tests/configs/tiny.yaml").read_text())
    cfg["out"] = "results/never"
    cfg["datasets"]["sim_sys"] = {"simulate": {"scenario": "systems-unique", "seed": 1, "n_cells": 400,
                                               "n_genes": 500}}
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(cfg))
    res = subprocess.run(
        [sys.executable, "-m", "snakemake", "-s", "workflow/Snakefile", "--configfile", str(path), "-n", "-p",
         "--directory", str(REPO), "results/never/data/sim_sys.h5ad"],
        cwd=REPO, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]
    assert "--scenario systems-unique" in res.stdout
    assert "--system-key system" in res.stdout
