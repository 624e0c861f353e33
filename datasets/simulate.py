"""Splatter-style simulation of two-batch scRNA-seq counts (the scCRAFT / ResPAN scenarios).

A numpy reimplementation, from the published algorithm description, of
Splatter's ``splatSimulate`` with ``dropout.type = "experiment"`` (Splatter is GPL-3 R code and
is not ported line by line; outputs match it in distribution, not bit for bit, because R and
numpy draw different random streams). The defaults are the parameters of ResPAN's
``data/simulate.R`` (E1), and :func:`simulate` then applies ResPAN's post-processing (E2):
``filter_cells(min_genes=200)``, ``filter_genes(min_cells=3)`` (the ``baseline``) and the nine
scenarios ``batch1-{0.5,0.25,0.125}``, ``common-{5,3,1}``, ``rare1-{0.5,0.2,0.1}``.

Generative model (per gene j, cell c, batch b(c), group g(c)):
  groups ~ Categorical(group_prob); library L_c ~ LogNormal(lib_loc, lib_scale);
  gene means m_j ~ Gamma(mean_shape, rate=mean_rate), outlier genes (prob out_prob) replaced
  by median(m) * f, f = max(F, 1/F), F ~ LogNormal(out_fac_loc, out_fac_scale);
  batch factors B_jk and DE factors D_jr by Splatter's getLNormFactors rule;
  base_jc = L_c * p_jc with p_jc = m_j B_j,b(c) D_j,g(c) normalised over genes;
  bcv_jc = (bcv_common + 1/sqrt(base_jc)) * sqrt(bcv_df / X_j), X_j ~ chi2(bcv_df);
  lambda_jc ~ Gamma(shape=1/bcv^2, scale=base*bcv^2); Y ~ Poisson(lambda);
  dropout: a count is zeroed with probability 1/(1+exp(-dropout_shape*(ln lambda - dropout_mid)))
  (= 1/(1+lambda) with the defaults mid=0, shape=-1).

Differences from the released code (each an option here):
  * ResPAN's scenario subsampling calls ``np.random.choice`` without a seed; here every random
    choice derives from the simulation ``seed`` (numpy ``SeedSequence``), so scenarios are
    reproducible. Subsets of different scenarios are drawn independently from the baseline.
  * Scale options for the scaling study and tests: ``n_cells`` (split evenly over batches like
    the original 2000/2000; the remainder goes to the first batches), ``n_genes`` and
    ``n_batches``. With ``n_batches > 2`` the published batch.facLoc (0.10, 0.15) and
    batch.facScale (0.5, 1.0) are extended by linear interpolation over the same range
    (``np.linspace(0.10, 0.15, n_batches)``; with 2 batches this is exactly the published pair),
    unless explicit vectors are given.
  * ``common-k`` with an odd number of non-shared groups gives the extra group to Batch1 (the
    published k = 5, 3, 1 leave an even number and split exactly as ResPAN). ``common-k``
    needs exactly 2 batches.
  * Counts are generated in chunks of cells (memory stays bounded for 1M cells) and returned as
    sparse CSR int32; ``TrueCounts`` and the per-cell mean matrices are not kept.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field, replace

import anndata as ad
import numpy as np
import pandas as pd
import scanpy as sc
import scipy.sparse as sp
from scipy.special import expit

#: the baseline and the nine published scenarios (ResPAN simulate_post_process.ipynb)
SCENARIOS = (
    "baseline",
    "batch1-0.5", "batch1-0.25", "batch1-0.125",
    "common-5", "common-3", "common-1",
    "rare1-0.5", "rare1-0.2", "rare1-0.1",
)

# What ResPAN's filter (>= 200 detected genes) keeps of the simulated cells, measured with seed 1
# and 400-4000 cells: cells have fewer detected genes when there are fewer genes to detect.
FILTER_HINT = "it keeps ~15% of the cells at 600 genes, ~60% at 1500, ~80% at the published 10000"
# A filter that keeps less than this share of n_cells is reported as a warning.
WARN_KEPT_SHARE = 0.5

# Cells x genes elements generated at once; bounds peak memory (~6 float64 arrays of this size).
CHUNK_ELEMENTS = 4_000_000


@dataclass(frozen=True)
class SplatParams:
    """Splatter parameters; defaults are ResPAN's data/simulate.R (the published parameters)."""

    n_genes: int = 10000
    batch_cells: tuple[int, ...] = (2000, 2000)
    mean_shape: float = 0.34
    mean_rate: float = 7.68
    lib_loc: float = 7.64
    lib_scale: float = 0.78
    out_prob: float = 0.00286
    out_fac_loc: float = 6.15
    out_fac_scale: float = 0.49
    bcv_common: float = 0.448
    bcv_df: float = 22.087
    batch_fac_loc: tuple[float, ...] = (0.10, 0.15)
    batch_fac_scale: tuple[float, ...] = (0.50, 1.0)
    group_prob: tuple[float, ...] = field(default_factory=lambda: (1 / 7,) * 7)
    de_prob: tuple[float, ...] = (0.10, 0.12, 0.08, 0.20, 0.12, 0.10, 0.16)
    de_down_prob: float = 0.5
    de_fac_loc: tuple[float, ...] = (0.10, 0.08, 0.12, 0.18, 0.06, 0.20, 0.14)
    de_fac_scale: tuple[float, ...] = (1.0,) * 7
    dropout_mid: float = 0.0
    dropout_shape: float = -1.0

    def check(self) -> None:
        """Raise ValueError naming the first inconsistent parameter."""
        n_batches, n_groups = len(self.batch_cells), len(self.group_prob)
        if self.n_genes < 1:
            raise ValueError(f"n_genes must be >= 1, got {self.n_genes}")
        if n_batches < 1 or min(self.batch_cells) < 1:
            raise ValueError(f"batch_cells must be positive cell counts, got {self.batch_cells}")
        for name in ("batch_fac_loc", "batch_fac_scale"):
            if len(getattr(self, name)) != n_batches:
                raise ValueError(f"{name} has {len(getattr(self, name))} values for {n_batches} batches")
        for name in ("de_prob", "de_fac_loc", "de_fac_scale"):
            if len(getattr(self, name)) != n_groups:
                raise ValueError(f"{name} has {len(getattr(self, name))} values for {n_groups} groups")
        if not np.isclose(sum(self.group_prob), 1.0):
            raise ValueError(f"group_prob must sum to 1, got {sum(self.group_prob)}")


def published_params(n_cells: int = 4000, n_genes: int = 10000, n_batches: int = 2) -> SplatParams:
    """The E1 parameters rescaled to ``n_cells`` (even split over batches), ``n_genes``, ``n_batches``.

    With more than 2 batches the batch factor location/scale vectors are interpolated linearly
    over the published range (0.10..0.15 and 0.5..1.0), see the module docstring.
    """
    if n_batches < 1:
        raise ValueError(f"n_batches must be >= 1, got {n_batches}")
    if n_cells < n_batches:
        raise ValueError(f"n_cells ({n_cells}) must be at least n_batches ({n_batches})")
    base, extra = divmod(n_cells, n_batches)
    batch_cells = tuple(base + (1 if k < extra else 0) for k in range(n_batches))
    default = SplatParams()
    if n_batches == 2:
        loc, scale = default.batch_fac_loc, default.batch_fac_scale
    else:
        loc = tuple(float(v) for v in np.linspace(0.10, 0.15, n_batches))
        scale = tuple(float(v) for v in np.linspace(0.5, 1.0, n_batches))
    return replace(default, n_genes=n_genes, batch_cells=batch_cells, batch_fac_loc=loc, batch_fac_scale=scale)


def lognormal_factors(rng: np.random.Generator, n: int, sel_prob: float, neg_prob: float,
                      loc: float, scale: float) -> np.ndarray:
    """Splatter's getLNormFactors rule: multiplicative factors, 1 for unselected items.

    Each item is selected with ``sel_prob``; a selected item gets f ~ LogNormal(loc, scale)
    raised to d = -1 (prob ``neg_prob``) or +1, with d flipped when f < 1 (so factors < 1 mean
    down-regulation chosen by d, not by the sign of log f).
    """
    selected = rng.random(n) < sel_prob
    fac = rng.lognormal(mean=loc, sigma=scale, size=n)
    direction = np.where(rng.random(n) < neg_prob, -1.0, 1.0)
    direction = np.where(fac < 1.0, -direction, direction)
    return np.where(selected, fac**direction, 1.0)


def simulate_gene_params(rng: np.random.Generator, params: SplatParams) -> pd.DataFrame:
    """Gene-level parameters (Splatter's geneinfo): base means, outliers, batch and DE factors."""
    n = params.n_genes
    base_mean = rng.gamma(shape=params.mean_shape, scale=1.0 / params.mean_rate, size=n)
    outlier_factor = lognormal_factors(rng, n, params.out_prob, 0.0, params.out_fac_loc, params.out_fac_scale)
    # Splatter replaces an outlier's mean by median * factor (not mean * factor).
    gene_mean = np.where(outlier_factor != 1.0, np.median(base_mean) * outlier_factor, base_mean)
    info = {"Gene": [f"Gene{j + 1}" for j in range(n)], "BaseGeneMean": base_mean,
            "OutlierFactor": outlier_factor, "GeneMean": gene_mean}
    for k, (loc, scale) in enumerate(zip(params.batch_fac_loc, params.batch_fac_scale)):
        info[f"BatchFacBatch{k + 1}"] = lognormal_factors(rng, n, 1.0, 0.5, loc, scale)
    for r in range(len(params.group_prob)):
        info[f"DEFacGroup{r + 1}"] = lognormal_factors(
            rng, n, params.de_prob[r], params.de_down_prob, params.de_fac_loc[r], params.de_fac_scale[r])
    return pd.DataFrame(info).set_index("Gene")


def simulate_count_chunk(rng: np.random.Generator, rel_means: np.ndarray, lib_sizes: np.ndarray,
                         bcv_gene_scale: np.ndarray, params: SplatParams) -> sp.csr_matrix:
    """Counts for a block of cells: BCV-Gamma cell means, Poisson, 'experiment' dropout.

    rel_means: cells x genes m_j * B * D (unnormalised); lib_sizes: per cell; bcv_gene_scale:
    sqrt(bcv_df / chi2_j) per gene. Returns CSR int32.
    """
    base = rel_means / rel_means.sum(axis=1, keepdims=True)
    base *= lib_sizes[:, None]
    bcv_sq = (params.bcv_common + 1.0 / np.sqrt(base)) * bcv_gene_scale[None, :]
    bcv_sq **= 2
    # Gamma(shape=1/bcv^2, scale=base*bcv^2) = standard_gamma(1/bcv^2) * base * bcv^2
    cell_means = rng.standard_gamma(1.0 / bcv_sq)
    cell_means *= base
    cell_means *= bcv_sq
    del base, bcv_sq
    counts = rng.poisson(cell_means)
    rows, cols = np.nonzero(counts)
    values = counts[rows, cols]
    # Zero counts stay zero whatever the dropout draw, so only nonzero entries need a draw.
    drop_prob = expit(params.dropout_shape * (np.log(cell_means[rows, cols]) - params.dropout_mid))
    keep = rng.random(values.size) >= drop_prob
    rows, cols, values = rows[keep], cols[keep], values[keep].astype(np.int32)
    indptr = np.concatenate([[0], np.cumsum(np.bincount(rows, minlength=counts.shape[0]))])
    return sp.csr_matrix((values, cols.astype(np.int32), indptr.astype(np.int64)), shape=counts.shape)


def splat_simulate(params: SplatParams, seed: int) -> ad.AnnData:
    """Unfiltered Splatter-style counts: X CSR int32; obs batch/celltype/ExpLibSize; var geneinfo.

    Random streams: ``SeedSequence(seed)`` is split into gene, cell and per-chunk streams, so
    the result depends only on (params, seed), not on memory or chunking of the caller.
    """
    params.check()
    ss_genes, ss_cells, ss_chunks = np.random.SeedSequence(seed).spawn(3)
    rng_genes, rng_cells = np.random.default_rng(ss_genes), np.random.default_rng(ss_cells)
    genes = simulate_gene_params(rng_genes, params)
    bcv_gene_scale = np.sqrt(params.bcv_df / rng_genes.chisquare(params.bcv_df, size=params.n_genes))

    n_cells = int(sum(params.batch_cells))
    batch_idx = np.repeat(np.arange(len(params.batch_cells)), params.batch_cells)
    group_idx = rng_cells.choice(len(params.group_prob), size=n_cells, p=np.asarray(params.group_prob))
    lib_sizes = rng_cells.lognormal(mean=params.lib_loc, sigma=params.lib_scale, size=n_cells)

    batch_facs = genes[[f"BatchFacBatch{k + 1}" for k in range(len(params.batch_cells))]].to_numpy().T
    de_facs = genes[[f"DEFacGroup{r + 1}" for r in range(len(params.group_prob))]].to_numpy().T
    gene_mean = genes["GeneMean"].to_numpy()

    rows_per_chunk = max(1, CHUNK_ELEMENTS // params.n_genes)
    starts = range(0, n_cells, rows_per_chunk)
    chunk_seeds = ss_chunks.spawn(len(starts))
    blocks = []
    for start, chunk_seed in zip(starts, chunk_seeds):
        cells = slice(start, min(start + rows_per_chunk, n_cells))
        rel_means = gene_mean[None, :] * batch_facs[batch_idx[cells]]
        rel_means *= de_facs[group_idx[cells]]
        blocks.append(simulate_count_chunk(np.random.default_rng(chunk_seed), rel_means,
                                           lib_sizes[cells], bcv_gene_scale, params))
    counts = sp.vstack(blocks, format="csr", dtype=np.int32)

    obs = pd.DataFrame(
        {
            "batch": pd.Categorical([f"Batch{k + 1}" for k in batch_idx],
                                    categories=[f"Batch{k + 1}" for k in range(len(params.batch_cells))]),
            "celltype": pd.Categorical([f"Group{r + 1}" for r in group_idx],
                                       categories=[f"Group{r + 1}" for r in range(len(params.group_prob))]),
            "ExpLibSize": lib_sizes,
        },
        index=[f"Cell{c + 1}" for c in range(n_cells)],
    )
    return ad.AnnData(X=counts, obs=obs, var=genes)


def filter_like_respan(adata: ad.AnnData, min_genes: int = 200, min_cells: int = 3) -> ad.AnnData:
    """ResPAN's baseline: ``filter_cells(min_genes)`` then ``filter_genes(min_cells)`` (scanpy).

    Filters ``adata`` in place (no copy: the raw matrix of a 1M-cell simulation is GBs) and
    returns it.
    """
    sc.pp.filter_cells(adata, min_genes=min_genes)
    sc.pp.filter_genes(adata, min_cells=min_cells)
    return adata


def remove_random(adata: ad.AnnData, candidates: np.ndarray, n_remove: int,
                  rng: np.random.Generator) -> ad.AnnData:
    """Drop ``n_remove`` cells chosen uniformly without replacement among boolean ``candidates``."""
    pool = np.flatnonzero(candidates)
    drop = rng.choice(pool, size=n_remove, replace=False)
    keep = np.ones(adata.n_obs, dtype=bool)
    keep[drop] = False
    return adata[keep].copy()


def downsample_batch1(adata: ad.AnnData, fraction: float, rng: np.random.Generator) -> ad.AnnData:
    """batch1-p: remove int((1-p) * n_Batch1) random Batch1 cells; other batches untouched."""
    in_batch1 = (adata.obs["batch"] == "Batch1").to_numpy()
    return remove_random(adata, in_batch1, int((1 - fraction) * in_batch1.sum()), rng)


def downsample_group1(adata: ad.AnnData, fraction: float, rng: np.random.Generator) -> ad.AnnData:
    """rare1-p: remove int(n_Group1 * (1-p)) random Group1 cells pooled over batches (as the code)."""
    in_group1 = (adata.obs["celltype"] == "Group1").to_numpy()
    return remove_random(adata, in_group1, int(in_group1.sum() * (1 - fraction)), rng)


def batch_specific_groups(n_common: int, n_groups: int = 7) -> tuple[list[str], list[str]]:
    """common-k split: Group1..k shared; the rest halved, first half Batch1-only, second Batch2-only.

    An odd remainder gives the extra group to Batch1 (not reached by the published k = 5, 3, 1).
    """
    if not 0 <= n_common <= n_groups:
        raise ValueError(f"common-k needs 0 <= k <= {n_groups}, got k={n_common}")
    rest = [f"Group{r}" for r in range(n_common + 1, n_groups + 1)]
    n_first = (len(rest) + 1) // 2
    return rest[:n_first], rest[n_first:]


def keep_common_types(adata: ad.AnnData, n_common: int) -> ad.AnnData:
    """common-k: remove Batch1-only groups from Batch2 and Batch2-only groups from Batch1."""
    batches = list(adata.obs["batch"].cat.categories)
    if batches != ["Batch1", "Batch2"]:
        raise ValueError(f"common-k scenarios need exactly batches Batch1/Batch2, got {batches}")
    n_groups = len(adata.obs["celltype"].cat.categories)
    only1, only2 = batch_specific_groups(n_common, n_groups)
    batch, group = adata.obs["batch"].to_numpy(), adata.obs["celltype"].to_numpy()
    drop = ((batch == "Batch2") & np.isin(group, only1)) | ((batch == "Batch1") & np.isin(group, only2))
    return adata[~drop].copy()


def parse_scenario(scenario: str) -> tuple[str, float | None]:
    """'baseline' -> ('baseline', None); 'batch1-0.25' -> ('batch1', 0.25); 'common-3' -> ('common', 3)."""
    if scenario == "baseline":
        return "baseline", None
    match = re.fullmatch(r"(batch1|rare1|common)-([0-9]*\.?[0-9]+)", scenario)
    if match is None:
        raise ValueError(f"unknown scenario '{scenario}'; expected one of {', '.join(SCENARIOS)} "
                         "(or batch1-<p>, rare1-<p>, common-<k>)")
    kind, value = match.group(1), float(match.group(2))
    if kind == "common":
        if not value.is_integer():
            raise ValueError(f"scenario '{scenario}': common-k needs an integer k")
    elif not 0 < value <= 1:
        raise ValueError(f"scenario '{scenario}': the fraction must be in (0, 1]")
    return kind, value


def apply_scenario(baseline: ad.AnnData, scenario: str, rng: np.random.Generator) -> ad.AnnData:
    """Derive a scenario dataset from the filtered baseline (ResPAN post-processing, E2)."""
    kind, value = parse_scenario(scenario)
    if kind == "baseline":
        return baseline
    if kind == "batch1":
        return downsample_batch1(baseline, value, rng)
    if kind == "rare1":
        return downsample_group1(baseline, value, rng)
    return keep_common_types(baseline, int(value))


def simulate(scenario: str = "baseline", seed: int = 1, n_cells: int = 4000, n_genes: int = 10000,
             n_batches: int = 2, min_genes: int = 200, min_cells: int = 3,
             params: SplatParams | None = None) -> ad.AnnData:
    """Simulate one ResPAN scenario dataset: Splatter-style counts, baseline filter, scenario.

    ``params`` overrides the published parameters entirely (then n_cells/n_genes/n_batches are
    ignored). Returns X = CSR int32 counts, obs ``batch``/``celltype``/``ExpLibSize`` (+ scanpy's
    ``n_genes``), var geneinfo (+ ``n_cells``), uns["simulation"] (scenario, seed, parameters).
    """
    parse_scenario(scenario)  # fail before the expensive part
    params = params or published_params(n_cells=n_cells, n_genes=n_genes, n_batches=n_batches)
    baseline = splat_simulate(params, seed)
    n_raw = baseline.n_obs
    filter_like_respan(baseline, min_genes=min_genes, min_cells=min_cells)
    if baseline.n_obs == 0:
        from datasets.ingest import DataError

        raise DataError(f"simulation (seed {seed}): none of the {n_raw} cells has {min_genes} detected genes "
                        f"among {params.n_genes} genes, which ResPAN's filter requires; raise n_genes "
                        f"({FILTER_HINT})")
    # The scenario stream is a separate child of the seed, after the three used by splat_simulate.
    scenario_rng = np.random.default_rng(np.random.SeedSequence(seed).spawn(4)[3])
    out = apply_scenario(baseline, scenario, scenario_rng)
    out.uns["simulation"] = {
        "scenario": scenario, "seed": int(seed), "n_cells_simulated": int(n_raw),
        "n_cells_after_filter": int(baseline.n_obs), "min_genes": min_genes, "min_cells": min_cells,
        **{k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(params).items()},
    }
    return out


def describe_cells(adata: ad.AnnData) -> str:
    """One line on the cells a simulation kept and why (from ``uns["simulation"]``); it starts
    with "warning: " when ResPAN's filter kept less than half of the cells asked for."""
    sim = adata.uns["simulation"]
    asked, kept, final = sim["n_cells_simulated"], sim["n_cells_after_filter"], adata.n_obs
    line = (f"simulated {asked} cells x {sim['n_genes']} genes (scenario {sim['scenario']}, seed {sim['seed']}); "
            f"ResPAN's filter (>= {sim['min_genes']} detected genes per cell) kept {kept}"
            + (f"; the scenario kept {final}" if final != kept else ""))
    if kept < WARN_KEPT_SHARE * asked:
        return (f"warning: {line}: few cells detect {sim['min_genes']} of {sim['n_genes']} genes; "
                f"raise n_genes to keep more ({FILTER_HINT})")
    return line
