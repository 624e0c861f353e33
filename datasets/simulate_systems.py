"""Simulated counts with substantial, cell-type-specific *system* effects (scenarios for sysVI's claims).

sysVI (Hrovatin et al. 2025) is about datasets from different "systems" (species, organoid vs
tissue, cells vs nuclei) whose differences are non-linear and differ between cell types, so that
"cVAE was unable to batch-correct some cell types". Splatter's batch effect (datasets/simulate.py)
is one per-gene factor shared by every cell type, which a conditional decoder absorbs; this
generator instead maps a shared latent cell state to gene expression through a different
non-linear function in each system.

Generative model (all draws from numpy ``SeedSequence(seed)``):

- Cell types t = 1..T (``n_types``, proportions ``type_prob``) are clusters in a latent space of
  ``n_latent`` dimensions: centre c_t ~ N(0, ``type_spread``^2 I). A cell's state is
  z = c_t + u v_t + e, with u ~ Uniform(-1, 1) along a type-specific direction v_t of length
  ``state_length`` (a continuous within-type state: the structure Moran's I measures) and
  e ~ N(0, ``state_noise``^2 I).
- Shared biology: gene logits eta_g = b_g + W_g . z, with b_g ~ N(0, ``gene_base_sd``^2) and a
  sparse loading matrix W (each entry non-zero with probability ``loading_prob``, N(0, 1)).
- System effect: each system s has its own random one-hidden-layer network
  f_s(z) = V_s tanh(U_s z + a_s) (``n_hidden`` units; U_s ~ N(0, 1/n_latent), a_s ~ N(0, 1),
  V_s sparse with probability ``system_gene_prob``, N(0, 1)), and a cell of type t in system s
  adds k_t * ``system_strength`` * f_s(z). The per-type factors k_t are evenly spaced from
  ``type_effect_range[0]`` to ``type_effect_range[1]`` and assigned to the types in a seeded
  random order, so some types differ little between systems and some a lot; because f_s
  depends on z, the effect also differs along each type's within-type state.
- Batches: ``batches_per_system`` batches in each system (obs ``batch`` "S1B1", "S1B2", ...,
  nested in ``system`` "S1", "S2"), each with a per-gene log-factor N(0, ``batch_sd``^2): the
  ordinary sample-to-sample effect, much smaller than the system effect.
- Counts: library size L ~ LogNormal(``lib_loc[s]``, ``lib_scale``) (the second system has
  fewer counts, as nuclei have), mean mu = L softmax(eta), counts ~ NB(mu, dispersion
  ``nb_theta``) drawn as Poisson(Gamma(theta, mu / theta)).

Scenarios: ``systems`` (every cell type in both systems) and ``systems-unique`` (the last two
cell types exist in one system only: type T-1 in S1, type T in S2; their cells in the other
system are removed after simulation, so the shared types keep their cells). Cells are split
evenly over the batches; n_cells counts the cells simulated (before removal).

Returns raw integer counts with obs ``batch``, ``system``, ``celltype``, ``state`` (u, the
within-type position) and ``system_effect`` (k_t), and ``uns["simulation"]``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp

#: the scenarios of this generator (the Splatter ones are in datasets/simulate.py)
SYSTEM_SCENARIOS = ("systems", "systems-unique")


@dataclass(frozen=True)
class SystemsParams:
    """Parameters of the systems simulation (see the module docstring for each symbol)."""

    n_cells: int = 1400
    n_genes: int = 2000
    n_types: int = 6
    type_prob: tuple[float, ...] = (0.25, 0.2, 0.17, 0.15, 0.13, 0.10)
    n_latent: int = 8
    type_spread: float = 0.8
    state_length: float = 1.0
    state_noise: float = 0.2
    gene_base_sd: float = 1.0
    loading_prob: float = 0.3
    n_hidden: int = 16
    system_gene_prob: float = 0.5
    system_strength: float = 0.5
    type_effect_range: tuple[float, float] = (0.3, 1.5)
    batches_per_system: int = 2
    batch_sd: float = 0.1
    lib_loc: tuple[float, float] = (8.3, 7.7)
    lib_scale: float = 0.4
    nb_theta: float = 10.0

    def check(self) -> None:
        """Raise ValueError naming the first bad parameter."""
        if self.n_genes < 2 or self.n_types < 2 or self.n_latent < 1 or self.n_hidden < 1:
            raise ValueError("n_genes, n_types need >= 2 and n_latent, n_hidden >= 1; got "
                             f"{self.n_genes}, {self.n_types}, {self.n_latent}, {self.n_hidden}")
        if len(self.type_prob) != self.n_types or not np.isclose(sum(self.type_prob), 1.0):
            raise ValueError(f"type_prob needs {self.n_types} values summing to 1, got {self.type_prob}")
        if self.batches_per_system < 1 or self.n_cells < 2 * self.batches_per_system:
            raise ValueError(f"n_cells ({self.n_cells}) must cover 2 x batches_per_system "
                             f"({self.batches_per_system}) batches")
        if len(self.lib_loc) != 2:
            raise ValueError(f"lib_loc needs one value per system (2), got {self.lib_loc}")
        if self.nb_theta <= 0:
            raise ValueError(f"nb_theta must be > 0, got {self.nb_theta}")


def system_network(rng: np.random.Generator, p: SystemsParams) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One system's random map f_s: (U_s, a_s, V_s) with f_s(z) = V_s tanh(U_s z + a_s)."""
    U = rng.normal(0.0, 1.0 / np.sqrt(p.n_latent), (p.n_latent, p.n_hidden))
    a = rng.normal(0.0, 1.0, p.n_hidden)
    V = rng.normal(0.0, 1.0, (p.n_hidden, p.n_genes)) * (rng.random((p.n_hidden, p.n_genes)) < p.system_gene_prob)
    return U, a, V


def simulate_systems_counts(p: SystemsParams, seed: int) -> ad.AnnData:
    """Counts of every simulated cell (both systems, all types); see the module docstring."""
    p.check()
    ss_model, ss_cells, ss_counts = np.random.SeedSequence(seed).spawn(3)
    rng = np.random.default_rng(ss_model)
    centres = rng.normal(0.0, p.type_spread, (p.n_types, p.n_latent))
    directions = rng.normal(0.0, 1.0, (p.n_types, p.n_latent))
    directions *= p.state_length / np.linalg.norm(directions, axis=1, keepdims=True)
    base = rng.normal(0.0, p.gene_base_sd, p.n_genes)
    W = rng.normal(0.0, 1.0, (p.n_latent, p.n_genes)) * (rng.random((p.n_latent, p.n_genes)) < p.loading_prob)
    nets = [system_network(rng, p) for _ in range(2)]
    type_effect = rng.permutation(np.linspace(*p.type_effect_range, p.n_types))
    n_batches = 2 * p.batches_per_system
    batch_logfc = rng.normal(0.0, p.batch_sd, (n_batches, p.n_genes))

    rng = np.random.default_rng(ss_cells)
    base_n, extra = divmod(p.n_cells, n_batches)
    batch_idx = np.repeat(np.arange(n_batches), [base_n + (b < extra) for b in range(n_batches)])
    system_idx = batch_idx // p.batches_per_system
    types = rng.choice(p.n_types, size=p.n_cells, p=np.asarray(p.type_prob))
    state = rng.uniform(-1.0, 1.0, p.n_cells)
    z = centres[types] + state[:, None] * directions[types] + rng.normal(0.0, p.state_noise, (p.n_cells, p.n_latent))
    eta = base[None, :] + z @ W + batch_logfc[batch_idx]
    for s, (U, a, V) in enumerate(nets):
        cells = system_idx == s
        eta[cells] += (type_effect[types[cells]] * p.system_strength)[:, None] * (np.tanh(z[cells] @ U + a) @ V)
    lib = rng.lognormal(np.asarray(p.lib_loc)[system_idx], p.lib_scale)

    eta -= eta.max(axis=1, keepdims=True)
    mu = np.exp(eta)
    mu *= (lib / mu.sum(axis=1))[:, None]
    rng = np.random.default_rng(ss_counts)
    counts = rng.poisson(rng.gamma(p.nb_theta, mu / p.nb_theta)).astype(np.int32)

    systems = [f"S{s + 1}" for s in range(2)]
    batches = [f"{systems[b // p.batches_per_system]}B{b % p.batches_per_system + 1}" for b in range(n_batches)]
    type_names = [f"Type{t + 1}" for t in range(p.n_types)]
    obs = pd.DataFrame({
        "batch": pd.Categorical.from_codes(batch_idx, batches),
        "system": pd.Categorical.from_codes(system_idx, systems),
        "celltype": pd.Categorical.from_codes(types, type_names),
        "state": state.astype(np.float32),
        "system_effect": type_effect[types].astype(np.float32),
        "ExpLibSize": lib,
    }, index=[f"Cell{c + 1}" for c in range(p.n_cells)])
    var = pd.DataFrame(index=[f"Gene{g + 1}" for g in range(p.n_genes)])
    return ad.AnnData(X=sp.csr_matrix(counts), obs=obs, var=var)


def system_unique_types(n_types: int) -> tuple[str, str]:
    """systems-unique: the type found only in S1 and the type found only in S2 (the last two)."""
    return f"Type{n_types - 1}", f"Type{n_types}"


def simulate_systems(scenario: str = "systems", seed: int = 1, n_cells: int = 1400, n_genes: int = 2000,
                     batches_per_system: int = 2, params: SystemsParams | None = None) -> ad.AnnData:
    """Simulate one systems scenario; ``params`` overrides the defaults (n_cells/n_genes/batches then ignored)."""
    if scenario not in SYSTEM_SCENARIOS:
        raise ValueError(f"unknown systems scenario '{scenario}'; expected one of {', '.join(SYSTEM_SCENARIOS)}")
    p = params or replace(SystemsParams(), n_cells=n_cells, n_genes=n_genes, batches_per_system=batches_per_system)
    adata = simulate_systems_counts(p, seed)
    if scenario == "systems-unique":
        only1, only2 = system_unique_types(p.n_types)
        cell_type, system = adata.obs["celltype"].to_numpy(), adata.obs["system"].to_numpy()
        drop = ((cell_type == only1) & (system == "S2")) | ((cell_type == only2) & (system == "S1"))
        adata = adata[~drop].copy()
    adata.uns["simulation"] = {
        "scenario": scenario, "seed": int(seed), "generator": "systems",
        "n_cells_simulated": int(p.n_cells), "n_cells_after_filter": int(adata.n_obs),
        **{k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(p).items()},
    }
    return adata


def describe_systems(adata: ad.AnnData) -> str:
    """One line on what a systems simulation made (for the simulate job's log)."""
    sim = adata.uns["simulation"]
    per_type = adata.obs.groupby(["celltype", "system"], observed=False).size().unstack()
    types = ", ".join(f"{t} {int(r['S1'])}/{int(r['S2'])}" for t, r in per_type.iterrows())
    return (f"simulated {sim['n_cells_simulated']} cells x {sim['n_genes']} genes in 2 systems x "
            f"{sim['batches_per_system']} batches (scenario {sim['scenario']}, seed {sim['seed']}); kept "
            f"{adata.n_obs}; cells per type in S1/S2: {types}")
