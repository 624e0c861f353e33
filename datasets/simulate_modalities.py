"""Paired modalities of the same cell types (scenarios for DAVAE's cross-modality task).

The DAVAE preprint integrates "two different single-cell data types on human peripheral blood
mononuclear cells (PBMCs): a scRNA-seq data ... and a scATAC-seq data", after it "simply
collapsed the peak matrix into an activity matrix by summing up all counts of peaks within a
same region (a gene body and its 2k upstream)", and "transfer[s] labels from a reference of
well-annotated scRNA-seq data to the spatial data" (10x Visium spots). This generator makes both
situations with known truth: one RNA batch and one batch of another modality, drawn from the same
cell types (Splatter's groups and differential-expression factors, datasets/simulate.py).

Generative model (all draws from numpy ``SeedSequence(seed)``; the RNA batch has its own child
stream, so ``rna-atac`` and ``rna-spots`` with one seed share the same RNA cells):

- Genes: Splatter's gene parameters with the published defaults (gene means m_j, outliers,
  per-group DE factors D_jt, two technology factors B_j1 for RNA and B_j2 for spots).
- ``RNA`` batch: Splatter-like counts (BCV-Gamma-Poisson, "experiment" dropout) of
  ``n_rna`` cells, types ~ Categorical(group_prob), mean m_j B_j1 D_jt.
- ``ATAC`` batch (scenario ``rna-atac``): gene activity of ``n_other`` nuclei. Accessibility
  of gene j in nucleus c of type t is a Bernoulli draw with
  logit p_jc = alpha + a_j + ``atac_coupling`` * log(m_j D_jt / median m) + d_c:
  a gene body is more often open where the gene is expressed, with a gene-wise offset
  a_j ~ N(0, ``atac_gene_sd``^2) (the gene-wise detection differs from RNA's: some expressed
  genes have short or closed bodies, some silent ones are open) and a per-nucleus depth
  d_c ~ N(0, ``atac_depth_sd``^2). alpha is solved (bisection) so that the expected share of
  nonzero entries is ``atac_detection``. A detected gene holds 1 read with probability
  1 - ``atac_multi_prob``, else 2, 3, ... (geometric): near-binary counts, as summed peak
  counts of a sparse scATAC-seq library are.
- ``Spots`` batch (scenario ``rna-spots``): ``n_other`` spots, each the sum of
  ``cells_per_spot`` cells. A spot has an anchor type ~ Categorical(group_prob); each of its
  cells is of the anchor type with probability ``spot_purity`` and of a type drawn from
  group_prob otherwise (a spot covers a tissue neighbourhood: mostly one type, a few others).
  Each cell's counts are Splatter-like with the spot technology's factor B_j2; the summed
  counts are thinned binomially with ``spot_capture`` (capture efficiency of the array).
  The spot's label is its most frequent type (the anchor on a tie); obs ``dominant_share`` is
  that type's share of the spot's cells and ``composition`` lists every type's count.

Returns raw integer counts with obs ``batch`` (``RNA``, ``ATAC`` or ``Spots``: one batch per
modality), ``modality`` (the same, named for the cross-modality task), ``celltype``,
``cells_in_obs`` (1, or ``cells_per_spot``), ``dominant_share`` (1 for single cells),
``composition``, and ``uns["simulation"]``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp
from scipy.special import expit

from datasets.simulate import CHUNK_ELEMENTS, SplatParams, simulate_count_chunk, simulate_gene_params

#: the scenarios of this generator: the RNA batch with an ATAC-like or a spot-like batch
MODALITY_SCENARIOS = ("rna-atac", "rna-spots")
#: obs ``batch`` / ``modality`` of each batch
RNA, ATAC, SPOTS = "RNA", "ATAC", "Spots"


@dataclass(frozen=True)
class ModalityParams:
    """Parameters of the paired-modality simulation (see the module docstring for each)."""

    n_rna: int = 600
    n_other: int = 600
    n_genes: int = 3000
    splat: SplatParams = SplatParams()
    atac_detection: float = 0.10
    atac_multi_prob: float = 0.05
    atac_coupling: float = 1.25
    atac_gene_sd: float = 1.0
    atac_depth_sd: float = 0.3
    cells_per_spot: int = 4
    spot_purity: float = 0.6
    spot_capture: float = 0.5

    def check(self) -> None:
        """Raise ValueError naming the first bad parameter."""
        if self.n_rna < 1 or self.n_other < 1 or self.n_genes < 2:
            raise ValueError(f"n_rna, n_other need >= 1 and n_genes >= 2; got {self.n_rna}, {self.n_other}, "
                             f"{self.n_genes}")
        if not 0 < self.atac_detection < 1:
            raise ValueError(f"atac_detection must be in (0, 1), got {self.atac_detection}")
        if not 0 <= self.atac_multi_prob < 1:
            raise ValueError(f"atac_multi_prob must be in [0, 1), got {self.atac_multi_prob}")
        if self.atac_gene_sd < 0 or self.atac_depth_sd < 0:
            raise ValueError(f"atac_gene_sd and atac_depth_sd must be >= 0, got {self.atac_gene_sd}, "
                             f"{self.atac_depth_sd}")
        if self.cells_per_spot < 1:
            raise ValueError(f"cells_per_spot must be >= 1, got {self.cells_per_spot}")
        if not 0 <= self.spot_purity <= 1 or not 0 < self.spot_capture <= 1:
            raise ValueError(f"spot_purity must be in [0, 1] and spot_capture in (0, 1], got {self.spot_purity}, "
                             f"{self.spot_capture}")


def splatter_counts(rng: np.random.Generator, genes: pd.DataFrame, bcv_gene_scale: np.ndarray,
                    types: np.ndarray, technology: int, p: ModalityParams) -> sp.csr_matrix:
    """Splatter-like counts of cells of ``types`` measured with technology factor ``technology``."""
    gene_mean = genes["GeneMean"].to_numpy()
    tech = genes[f"BatchFacBatch{technology}"].to_numpy()
    de = genes[[f"DEFacGroup{t + 1}" for t in range(len(p.splat.group_prob))]].to_numpy().T
    lib = rng.lognormal(mean=p.splat.lib_loc, sigma=p.splat.lib_scale, size=types.size)
    step = max(1, CHUNK_ELEMENTS // p.n_genes)
    blocks = [simulate_count_chunk(rng, (gene_mean * tech)[None, :] * de[types[s:s + step]], lib[s:s + step],
                                   bcv_gene_scale, p.splat)
              for s in range(0, types.size, step)]
    return sp.vstack(blocks, format="csr", dtype=np.int32)


def solve_intercept(logits: np.ndarray, target: float) -> float:
    """alpha with mean(sigmoid(logits + alpha)) = target (bisection; the mean rises with alpha)."""
    lo, hi = -50.0, 50.0
    for _ in range(100):
        mid = 0.5 * (lo + hi)
        if expit(logits + mid).mean() < target:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)


def atac_counts(rng: np.random.Generator, genes: pd.DataFrame, types: np.ndarray,
                p: ModalityParams) -> sp.csr_matrix:
    """Near-binary gene activity of nuclei of ``types`` (accessibility model of the module docstring)."""
    gene_mean = genes["GeneMean"].to_numpy()
    de = genes[[f"DEFacGroup{t + 1}" for t in range(len(p.splat.group_prob))]].to_numpy().T
    gene_offset = rng.normal(0.0, p.atac_gene_sd, p.n_genes)
    depth = rng.normal(0.0, p.atac_depth_sd, types.size)
    logits = gene_offset[None, :] + p.atac_coupling * np.log(gene_mean * de[types] / np.median(gene_mean))
    logits += depth[:, None]
    logits += solve_intercept(logits, p.atac_detection)
    detected = rng.random(logits.shape) < expit(logits)
    rows, cols = np.nonzero(detected)
    # numpy's geometric counts trials to the first success: 1 with probability 1 - multi_prob
    values = rng.geometric(1.0 - p.atac_multi_prob, size=rows.size).astype(np.int32)
    return sp.csr_matrix((values, (rows, cols)), shape=logits.shape, dtype=np.int32)


def spot_design(rng: np.random.Generator, p: ModalityParams) -> tuple[np.ndarray, np.ndarray]:
    """Cell types of every spot's cells (spots x cells_per_spot) and each spot's anchor type."""
    probs = np.asarray(p.splat.group_prob)
    anchor = rng.choice(probs.size, size=p.n_other, p=probs)
    other = rng.choice(probs.size, size=(p.n_other, p.cells_per_spot), p=probs)
    pure = rng.random((p.n_other, p.cells_per_spot)) < p.spot_purity
    return np.where(pure, anchor[:, None], other), anchor


def spot_labels(cell_types: np.ndarray, anchor: np.ndarray, n_types: int) -> tuple[np.ndarray, np.ndarray]:
    """Each spot's most frequent type (the anchor when it ties for most) and that type's share."""
    per_type = np.stack([(cell_types == t).sum(axis=1) for t in range(n_types)], axis=1)
    top = per_type.max(axis=1)
    anchor_ties = per_type[np.arange(anchor.size), anchor] == top
    label = np.where(anchor_ties, anchor, per_type.argmax(axis=1))
    return label, top / cell_types.shape[1]


def composition_text(cell_types: np.ndarray, names: list[str]) -> list[str]:
    """'Group1:3;Group4:1' per row of cell types (types by name order)."""
    out = []
    for row in cell_types:
        values, counts = np.unique(row, return_counts=True)
        out.append(";".join(f"{names[v]}:{c}" for v, c in zip(values, counts)))
    return out


def spot_counts(rng: np.random.Generator, genes: pd.DataFrame, bcv_gene_scale: np.ndarray,
                cell_types: np.ndarray, p: ModalityParams) -> sp.csr_matrix:
    """Summed, capture-thinned Splatter counts of each spot's cells (spots x genes)."""
    cells = splatter_counts(rng, genes, bcv_gene_scale, cell_types.ravel(), 2, p)
    pool = sp.csr_matrix((np.ones(cells.shape[0]), (np.repeat(np.arange(p.n_other), p.cells_per_spot),
                                                    np.arange(cells.shape[0]))), shape=(p.n_other, cells.shape[0]))
    summed = (pool @ cells).tocsr()
    summed.data = rng.binomial(summed.data.astype(np.int64), p.spot_capture).astype(np.int32)
    summed.eliminate_zeros()
    return summed


def simulate_modalities(scenario: str = "rna-atac", seed: int = 1, n_cells: int = 1200, n_genes: int = 3000,
                        params: ModalityParams | None = None) -> ad.AnnData:
    """Simulate one scenario: ``n_cells`` observations, half RNA cells, half nuclei or spots.

    ``params`` overrides the defaults (n_cells / n_genes are then ignored).
    """
    if scenario not in MODALITY_SCENARIOS:
        raise ValueError(f"unknown modality scenario '{scenario}'; expected one of {', '.join(MODALITY_SCENARIOS)}")
    if params is None:
        n_rna = (n_cells + 1) // 2
        params = replace(ModalityParams(), n_rna=n_rna, n_other=n_cells - n_rna, n_genes=n_genes)
    p = replace(params, splat=replace(params.splat, n_genes=params.n_genes,
                                      batch_cells=(params.n_rna, params.n_other)))
    p.check()
    p.splat.check()
    ss_genes, ss_rna, ss_other = np.random.SeedSequence(seed).spawn(3)
    rng = np.random.default_rng(ss_genes)
    genes = simulate_gene_params(rng, p.splat)
    bcv_gene_scale = np.sqrt(p.splat.bcv_df / rng.chisquare(p.splat.bcv_df, size=p.n_genes))
    n_types = len(p.splat.group_prob)
    names = [f"Group{t + 1}" for t in range(n_types)]

    rng = np.random.default_rng(ss_rna)
    rna_types = rng.choice(n_types, size=p.n_rna, p=np.asarray(p.splat.group_prob))
    rna = splatter_counts(rng, genes, bcv_gene_scale, rna_types, 1, p)

    rng = np.random.default_rng(ss_other)
    if scenario == "rna-atac":
        other_name, cells_in_obs = ATAC, 1
        other_types = rng.choice(n_types, size=p.n_other, p=np.asarray(p.splat.group_prob))
        other = atac_counts(rng, genes, other_types, p)
        share = np.ones(p.n_other)
        composition = [f"{names[t]}:1" for t in other_types]
    else:
        other_name, cells_in_obs = SPOTS, p.cells_per_spot
        cell_types, anchor = spot_design(rng, p)
        other = spot_counts(rng, genes, bcv_gene_scale, cell_types, p)
        other_types, share = spot_labels(cell_types, anchor, n_types)
        composition = composition_text(cell_types, names)

    batches = [RNA, other_name]
    batch_idx = np.repeat([0, 1], [p.n_rna, p.n_other])
    obs = pd.DataFrame({
        "batch": pd.Categorical.from_codes(batch_idx, batches),
        "modality": pd.Categorical.from_codes(batch_idx, batches),
        "celltype": pd.Categorical.from_codes(np.concatenate([rna_types, other_types]), names),
        "cells_in_obs": np.repeat([1, cells_in_obs], [p.n_rna, p.n_other]).astype(np.int32),
        "dominant_share": np.concatenate([np.ones(p.n_rna), share]).astype(np.float32),
        "composition": [f"{names[t]}:1" for t in rna_types] + composition,
    }, index=[f"{b}{c + 1}" for b, n in zip(batches, (p.n_rna, p.n_other)) for c in range(n)])
    adata = ad.AnnData(X=sp.vstack([rna, other], format="csr", dtype=np.int32), obs=obs,
                       var=pd.DataFrame(index=genes.index.copy()))
    params_record = asdict(p)
    params_record.pop("splat")
    adata.uns["simulation"] = {
        "scenario": scenario, "seed": int(seed), "generator": "modalities",
        "splat": {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(p.splat).items()},
        **params_record,
    }
    return adata


def describe_modalities(adata: ad.AnnData) -> str:
    """One line on what a modality simulation made (for the simulate job's log)."""
    sim = adata.uns["simulation"]
    parts = []
    for name in adata.obs["modality"].cat.categories:
        X = adata[adata.obs["modality"] == name].X
        nonzero = X.nnz / (X.shape[0] * X.shape[1])
        parts.append(f"{name} {X.shape[0]} obs, {nonzero:.1%} nonzero, {np.mean(X.data <= 1):.1%} of nonzeros = 1")
    return (f"simulated scenario {sim['scenario']} (seed {sim['seed']}), {sim['n_genes']} genes: "
            + "; ".join(parts))
