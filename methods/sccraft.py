"""scCRAFT (He et al., Commun Biol 2025): VAE + multi-domain GAN + dual-resolution triplet loss.

PyTorch reimplementation of the released code (``ch2343/scCRAFT`` @ 02ed693), written from its
description, not copied. Input: ``X`` (log-normalized HVGs).

Model (defaults = released code):
  encoder (no batch input): G -> 1024 -> 512 (Linear, BatchNorm, ReLU; BN weights ~ N(1, 0.02)),
  q_m = Linear(512 -> 256), q_v = exp(Linear(512 -> 256)) + 1e-4, z = q_m + sqrt(q_v) * eps;
  decoder: ReLU(G1([z, onehot(batch)]) + G2(onehot(batch))), G1/G2: -> 512 -> 1024 -> G with
  ReLU, no BN; NB mean mu = exp(Linear(G -> G)), per-cell, per-gene dispersion
  theta = exp(Linear(G -> G)); discriminator z -> 128 -> 128 -> B (ReLU), cross-entropy.
Losses: L_rec = mean over cells and genes of min(NB NLL(x; mu, theta), 1e5) on the log data;
  KL to N(0, I) (weight 0.005); cosine 1 - cos(mu, x) (weight 20); triplet margin 5
  (``lambda_T`` 1) on the sampled z with within-batch dual-resolution triplets
  (:mod:`methods.sccraft_triplets`); generator loss adds ``-lambda_D * CE(D(z), batch)``
  (``lambda_D`` 0.2) from epoch ``warmup_epochs`` (50) on.
Optimization: Adam lr 1e-3 for VAE and D; per minibatch one VAE forward, 10 D steps, one
  generator step with the updated D. Each epoch samples 512 cells per batch (with replacement
  when a batch is smaller), shuffled into minibatches of 1024. Epochs: max(150,
  int(1.5 N / (B * 512))) unless ``max_epochs`` is given.
Embedding: eval mode, sampled z of every cell, PCA to 50 dims (sklearn).
Clustering: :mod:`methods.sccraft_clusters` (PCA 50, 15-NN, Leiden at 0.5 and 7), cached in
  BENCH_CACHE_DIR when set.

Code-vs-paper differences (each an option, code default first):
  * high_res_scope: "global" (code: a separate global clustering at resolution 7) or
    "within_low" (paper: high resolution clustering inside each low-resolution cluster).
  * balanced_minibatches: False (code: 512 cells per batch per epoch, shuffled into random
    1024-cell minibatches, approximately balanced) or True (paper: every minibatch holds
    minibatch_size // B cells of each batch; the paper's size is 512, set minibatch_size).
  * triplet_distance: "euclidean" (code: relu(torch.norm(z_a - z_p) - torch.norm(z_a - z_n) + 5),
    plain 2-norms, not torch's TripletMarginLoss, whose norms add eps = 1e-6) or "squared"
    (paper eq. 5).
  * cluster_method: "leiden" (README and notebooks) or "louvain" (the function's default).
  * latent: "sample" (code) or "mean" (posterior mean); pca_dims: 50 (code) or 0 (no PCA).
  * lambda_D / lambda_T / low_resolution are exposed for the paper's grids (Fig. S20: lambda_D=0
    and lambda_T=0 are its ablations); the code hard-codes lambda_T = 1, cosine 20, margin 5, 15
    pairs per label: exposed as lambda_T, cos_weight, triplet_margin, n_pos.
  * holdout: 0 (code: every cell trains) or a share of cells (seeded) kept out of training and
    used only to record their reconstruction per epoch (``reconstruction_validation``: the
    capped NB NLL at the posterior means, eval mode, no random draws), the convergence signal
    on small data, where the training term keeps falling as the network memorises the cells.
    Every cell is still embedded, and the clusters are computed on every cell.
Implementation differences that do not change the model:
  * The 10 D steps use z.detach(): the released code backpropagates them into the encoder
    (retain_graph) and then zeroes those gradients before the generator step, so the updates
    are identical and the wasted encoder backward passes are skipped.
  * G2 depends only on the batch one-hot; it is evaluated on the B distinct one-hot rows and
    spread to the cells by a one-hot product (same values and gradients, 1/5 less decoder work;
    a product rather than a gather, whose backward sums in thread order: see ``decode``).
  * mu and theta heads are one Linear(G -> 2G) (same init distribution as two Linear(G -> G)).
  * Seeds: the released code fixes seed 22 for init and seed = epoch for sampling, so every run
    is identical; here the run seed drives init, sampling and triplets (same seed -> same
    result on CPU), so seeds differ as the benchmark needs.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from methods.base import IntegrationResult, ParamError
from methods.nn.layers import MLP, Linear
from methods.nn.likelihoods import kl_normal_standard
from methods.nn.training import (
    LossHistory,
    balanced_indices,
    check_finite,
    encode_in_batches,
    eval_mode,
    holdout_split,
    pick_device,
    progress,
    seed_all,
    to_device_tensor,
)
from methods.sccraft_clusters import cached_dual_resolution_clusters
from methods.sccraft_triplets import make_triplets, triplet_loss

DEFAULTS: dict[str, Any] = {
    "n_latent": 256,
    "lambda_D": 0.2,
    "lambda_T": 1.0,
    "kl_weight": 0.005,
    "cos_weight": 20.0,
    "triplet_margin": 5.0,
    "n_pos": 15,
    "triplet_distance": "euclidean",
    "d_steps": 10,
    "lr": 1e-3,
    "max_epochs": None,
    "warmup_epochs": 50,
    "cells_per_batch": 512,
    "minibatch_size": 1024,
    "balanced_minibatches": False,
    "low_resolution": 0.5,
    "high_resolution": 7.0,
    "cluster_method": "leiden",
    "high_res_scope": "global",
    "n_neighbors": 15,
    "latent": "sample",
    "pca_dims": 50,
    "holdout": 0.0,
}

NB_NLL_CAP = 1e5  # the released code clamps each cell x gene NB NLL at 1e5 before averaging


def check_params(params: dict[str, Any]) -> dict[str, Any]:
    """Validated, typed copy of the parameters (registry defaults already merged)."""
    p = {**DEFAULTS, **params}
    out = dict(p)

    def number(name, cast, minimum, strict=False):
        try:
            val = cast(p[name])
        except (TypeError, ValueError):
            raise ParamError(f"sccraft: {name} must be a number, got {p[name]!r}") from None
        too_small = val <= minimum if strict else val < minimum
        if too_small or not math.isfinite(val):
            raise ParamError(f"sccraft: {name} must be {'>' if strict else '>='} {minimum}, got {p[name]!r}")
        out[name] = val

    for name in ("lambda_D", "lambda_T", "kl_weight", "cos_weight", "triplet_margin"):
        number(name, float, 0.0)
    for name in ("lr", "low_resolution", "high_resolution"):
        number(name, float, 0.0, strict=True)
    for name in ("n_latent", "n_pos", "cells_per_batch", "n_neighbors"):
        number(name, int, 1)
    number("minibatch_size", int, 2)
    number("d_steps", int, 0)
    number("warmup_epochs", int, 0)
    number("pca_dims", int, 0)
    if p["max_epochs"] is not None:
        number("max_epochs", int, 1)
    number("holdout", float, 0.0)
    if out["holdout"] >= 0.5:
        raise ParamError(f"sccraft: holdout must be a share of cells in [0, 0.5), got {p['holdout']!r}")
    choices = {"triplet_distance": ("euclidean", "squared"), "cluster_method": ("leiden", "louvain"),
               "high_res_scope": ("global", "within_low"), "latent": ("sample", "mean")}
    for name, allowed in choices.items():
        if p[name] not in allowed:
            raise ParamError(f"sccraft: {name} must be one of {', '.join(allowed)}, got {p[name]!r}")
    if not isinstance(p["balanced_minibatches"], bool):
        raise ParamError(f"sccraft: balanced_minibatches must be true or false, got {p['balanced_minibatches']!r}")
    return out


def default_epochs(n_cells: int, n_batches: int, cells_per_batch: int = 512) -> int:
    """The released code's epoch rule: max(150, int(1.5 N / (B * 512)))."""
    return max(150, int(1.5 * n_cells / (n_batches * cells_per_batch)))


def nb_nll_elementwise(x: torch.Tensor, mu: torch.Tensor, theta: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Cell x gene NB negative log-likelihood (continuous x), the released code's formula.

    Elementwise rather than methods.nn.likelihoods.nb_nll (summed over genes) because the code
    caps every element at 1e5 before taking the mean over cells and genes.
    """
    log_theta_mu = torch.log(theta + mu + eps)
    ll = (theta * (torch.log(theta + eps) - log_theta_mu) + x * (torch.log(mu + eps) - log_theta_mu)
          + torch.lgamma(x + theta) - torch.lgamma(theta) - torch.lgamma(x + 1.0))
    return -ll


class SCCRAFTVAE(nn.Module):
    """Encoder (no batch input) and the dual generator-decoder with NB heads."""

    def __init__(self, n_genes: int, n_batches: int, n_latent: int = 256):
        super().__init__()
        self.n_batches = n_batches
        self.encoder = MLP(n_genes, [1024, 512], None, norm="batch", activation="relu")
        self.q_mean = Linear(512, n_latent)
        self.q_logvar = Linear(512, n_latent)
        self.g1 = MLP(n_latent + n_batches, [512, 1024], n_genes, norm=None, activation="relu")
        self.g2 = MLP(n_batches, [512, 1024], n_genes, norm=None, activation="relu")
        self.heads = Linear(n_genes, 2 * n_genes)  # [log mu, log theta]
        self.register_buffer("batch_eye", torch.eye(n_batches))
        for module in self.modules():  # the released code's weights_init_normal for BatchNorm
            if isinstance(module, nn.BatchNorm1d):
                nn.init.normal_(module.weight, 1.0, 0.02)
                nn.init.zeros_(module.bias)

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(q_m, q_v, z sample) of the posterior."""
        h = self.encoder(x)
        q_m = self.q_mean(h)
        q_v = torch.exp(self.q_logvar(h)) + 1e-4
        z = q_m + torch.sqrt(q_v) * torch.randn_like(q_m)
        return q_m, q_v, z

    def decode(self, z: torch.Tensor, batch: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """NB mean and dispersion per cell and gene."""
        onehot = self.batch_eye[batch]
        # G2 sees only the batch: run on its B rows, then spread to the cells by the one-hot (exact);
        # a gather's backward (index_put with accumulate) adds in thread-timing order on CPU
        shared = onehot @ self.g2(self.batch_eye)
        comb = torch.relu(self.g1(torch.cat([z, onehot], dim=1)) + shared)
        log_mu, log_theta = self.heads(comb).chunk(2, dim=1)
        return torch.exp(log_mu), torch.exp(log_theta)

    def embed(self, x: torch.Tensor, _cov=None, sample: bool = True) -> torch.Tensor:
        q_m, _, z = self.encode(x)
        return z if sample else q_m


def make_discriminator(n_latent: int, n_batches: int) -> MLP:
    """Batch classifier z -> 128 -> 128 -> B (ReLU, no norm), logits."""
    return MLP(n_latent, [128, 128], n_batches, norm=None, activation="relu")


def epoch_minibatches(batch_codes: torch.Tensor, n_batches: int, cells_per_batch: int, minibatch_size: int,
                      balanced: bool, generator: torch.Generator, device: torch.device) -> list[torch.Tensor]:
    """One epoch's minibatch index tensors (cells_per_batch per batch; see module docstring)."""
    if not balanced:
        sampled = balanced_indices(batch_codes, cells_per_batch, generator, device)
        batches = list(torch.split(sampled, minibatch_size))
    else:
        per_mb = max(1, minibatch_size // n_batches)
        rows = []
        codes = batch_codes.cpu()
        for b in range(n_batches):  # B draws per epoch, not per step
            members = torch.nonzero(codes == b, as_tuple=True)[0]
            if members.numel() >= cells_per_batch:
                rows.append(members[torch.randperm(members.numel(), generator=generator)[:cells_per_batch]])
            else:
                rows.append(members[torch.randint(0, members.numel(), (cells_per_batch,), generator=generator)])
        table = torch.stack(rows)  # B x cells_per_batch, each row in random order
        batches = []
        for chunk in torch.split(table, per_mb, dim=1):
            flat = chunk.reshape(-1)
            batches.append(flat[torch.randperm(flat.numel(), generator=generator)].to(device))
    return [b for b in batches if b.numel() >= 2]  # BatchNorm needs two cells


def heldout_reconstruction(vae: SCCRAFTVAE, X: torch.Tensor, batch: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """The capped NB NLL of the held-out cells decoded from their posterior means (eval mode)."""
    with torch.no_grad(), eval_mode(vae):
        x, b = X[idx], batch[idx]
        mu, theta = vae.decode(vae.q_mean(vae.encoder(x)), b)
        return torch.clamp(nb_nll_elementwise(x, mu, theta), max=NB_NLL_CAP).mean()


class SCCRAFTTrainer:
    """Optimizers and one training step (VAE forward, ``d_steps`` discriminator steps, generator
    step), as ``train`` runs them (benchmarks/gpu_check.py times the same steps)."""

    def __init__(self, vae: SCCRAFTVAE, disc: nn.Module, X: torch.Tensor, batch: torch.Tensor, low: torch.Tensor,
                 high: torch.Tensor, p: dict[str, Any], generator: torch.Generator,
                 triplet_generator: torch.Generator, train_idx: torch.Tensor | None = None,
                 heldout_idx: torch.Tensor | None = None) -> None:
        """train_idx / heldout_idx: cells trained on (default every cell) and held out (default none)."""
        self.vae, self.disc, self.X, self.batch, self.low, self.high, self.p = vae, disc, X, batch, low, high, p
        self.generator, self.triplet_generator = generator, triplet_generator
        self.train_idx, self.heldout_idx = train_idx, heldout_idx
        self.train_batch = batch if train_idx is None else batch[train_idx]
        self.opt_g = torch.optim.Adam(vae.parameters(), lr=p["lr"])
        self.opt_d = torch.optim.Adam(disc.parameters(), lr=p["lr"])
        self.history = LossHistory()
        self.epoch = 0  # the adversarial term is on from epoch p["warmup_epochs"]

    def epoch_minibatches(self) -> list[torch.Tensor]:
        """One epoch's minibatches of cell indices (``epoch_minibatches``, mapped to the trained cells)."""
        p = self.p
        batches = epoch_minibatches(self.train_batch, self.vae.n_batches, p["cells_per_batch"], p["minibatch_size"],
                                    p["balanced_minibatches"], self.generator, self.X.device)
        return batches if self.train_idx is None else [self.train_idx[idx] for idx in batches]

    def step(self, idx: torch.Tensor) -> None:
        vae, disc, p, device = self.vae, self.disc, self.p, self.X.device
        lambda_d = p["lambda_D"] if self.epoch >= p["warmup_epochs"] else 0.0
        x, b = self.X[idx], self.batch[idx]
        q_m, q_v, z = vae.encode(x)
        mu, theta = vae.decode(z, b)
        rec = torch.clamp(nb_nll_elementwise(x, mu, theta), max=NB_NLL_CAP).mean()
        kl = kl_normal_standard(q_m, q_v).mean()
        cos = (1.0 - (F.normalize(mu, dim=1) * F.normalize(x, dim=1)).sum(dim=1)).mean()

        z_fixed = z.detach()
        d_sum = torch.zeros((), device=device)
        for _ in range(p["d_steps"]):
            self.opt_d.zero_grad(set_to_none=True)
            d_loss = F.cross_entropy(disc(z_fixed), b)
            d_loss.backward()
            self.opt_d.step()
            d_sum = d_sum + d_loss.detach()

        a, pos, neg = make_triplets(b, self.low[idx], self.high[idx], p["n_pos"], self.triplet_generator)
        trip = triplet_loss(z, a, pos, neg, p["triplet_margin"], p["triplet_distance"] == "squared")
        disc.requires_grad_(False)  # the generator step needs dL/dz only, not dL/dD
        adv = F.cross_entropy(disc(z), b)
        loss = rec + p["kl_weight"] * kl + p["cos_weight"] * cos + p["lambda_T"] * trip - lambda_d * adv
        self.opt_g.zero_grad(set_to_none=True)
        loss.backward()
        self.opt_g.step()
        disc.requires_grad_(True)

        terms = {"loss": loss, "reconstruction": rec, "kl": kl, "cosine": cos, "triplet": trip,
                 "adversarial": adv, "discriminator": d_sum / max(p["d_steps"], 1),
                 "n_triplets": torch.as_tensor(float(a.numel()), device=device)}
        for term, value in terms.items():
            self.history.add(term, value)

    def end_epoch(self, epoch: int) -> None:
        """Held-out reconstruction, then the epoch's one host sync (loss means, NaN guard); the next
        epoch is ``epoch + 1`` (0-based)."""
        if self.heldout_idx is not None and self.heldout_idx.numel():
            self.history.add("reconstruction_validation",
                             heldout_reconstruction(self.vae, self.X, self.batch, self.heldout_idx))
        check_finite(self.history.end_epoch(), epoch)
        self.epoch = epoch + 1


def train(vae: SCCRAFTVAE, disc: nn.Module, X: torch.Tensor, batch: torch.Tensor, low: torch.Tensor,
          high: torch.Tensor, p: dict[str, Any], epochs: int, generator: torch.Generator,
          triplet_generator: torch.Generator, train_idx: torch.Tensor | None = None,
          heldout_idx: torch.Tensor | None = None, first_epoch: int = 0) -> dict[str, list[float]]:
    """Train in place on ``train_idx`` (default every cell); returns the loss history {term:
    [per-epoch mean]}, with the held-out reconstruction when ``heldout_idx`` is given.
    ``first_epoch``: epochs trained before (a continuation), for the adversarial warm-up."""
    trainer = SCCRAFTTrainer(vae, disc, X, batch, low, high, p, generator, triplet_generator, train_idx,
                             heldout_idx)
    trainer.epoch = first_epoch
    vae.train()
    disc.train()
    for epoch in progress(range(first_epoch, first_epoch + epochs), desc="scCRAFT", total=epochs):
        for idx in trainer.epoch_minibatches():
            trainer.step(idx)
        trainer.end_epoch(epoch)
    return trainer.history.as_dict()


def embedding(vae: SCCRAFTVAE, X: torch.Tensor, latent: str, pca_dims: int, seed: int) -> np.ndarray:
    """Eval-mode latent (sample or mean) of all cells, then PCA like the released code."""
    sample = latent == "sample"
    z = encode_in_batches(lambda xb, _c: vae.embed(xb, sample=sample), X, None, batch_size=2048, module=vae)
    if pca_dims <= 0 or pca_dims >= min(z.shape):
        return z
    from sklearn.decomposition import PCA

    return PCA(n_components=pca_dims, random_state=seed).fit_transform(z).astype(np.float32)


def _batch_codes(adata, batch_key: str) -> tuple[np.ndarray, list[str]]:
    if batch_key not in adata.obs:
        raise ValueError(f"sccraft: batch key '{batch_key}' not in adata.obs (have: {', '.join(adata.obs)})")
    values = adata.obs[batch_key]
    if values.isna().any():
        raise ValueError(f"sccraft: obs['{batch_key}'] has {int(values.isna().sum())} missing values")
    cats, codes = np.unique(values.astype(str).to_numpy(), return_inverse=True)
    if cats.size < 2:
        raise ValueError(f"sccraft: obs['{batch_key}'] has a single batch ('{cats[0]}'); nothing to integrate")
    return codes.astype(np.int64), cats.tolist()


def _check_input(X) -> None:
    import scipy.sparse as sp

    values = X.data if sp.issparse(X) else np.asarray(X)
    if values.size and not np.isfinite(values).all():
        raise ValueError("sccraft: adata.X contains NaN or inf; expected log-normalized expression")
    if values.size and values.min() < 0:
        raise ValueError(f"sccraft: adata.X has negative values (min {values.min():.3g}); the NB loss "
                         "needs non-negative log-normalized expression")


def train_on(adata, codes: np.ndarray, vae: SCCRAFTVAE, disc: nn.Module, p: dict[str, Any], seed: int,
             generators: tuple[torch.Generator, torch.Generator], epochs: int | None = None,
             first_epoch: int = 0) -> tuple[dict[str, list[float]], int, dict[str, Any], torch.Tensor]:
    """Cluster ``adata``'s cells and train on them (``epochs``, default the code's rule); returns
    the loss history, the epochs, what the record keeps of the clusters and the cells' expression
    on the device. ``first_epoch``
    counts epochs already trained (the adversarial warm-up is over after ``warmup_epochs``)."""
    low, high, cache_hit = cached_dual_resolution_clusters(
        adata.X, low_resolution=p["low_resolution"], high_resolution=p["high_resolution"],
        method=p["cluster_method"], high_scope=p["high_res_scope"], n_neighbors=p["n_neighbors"])
    dev = next(vae.parameters()).device
    X = to_device_tensor(adata.X, dev)
    batch = torch.as_tensor(codes, device=dev)
    epochs = epochs or p["max_epochs"] or default_epochs(adata.n_obs, vae.n_batches, p["cells_per_batch"])
    train_idx, heldout_idx = holdout_split(adata.n_obs, p["holdout"], seed, dev)
    history = train(vae, disc, X, batch, torch.as_tensor(low, device=dev), torch.as_tensor(high, device=dev),
                    p, epochs, *generators, train_idx, heldout_idx, first_epoch=first_epoch)
    clusters = {"n_low_clusters": int(np.unique(low).size), "n_high_clusters": int(np.unique(high).size),
                "cluster_cache_hit": cache_hit}
    return history, epochs, clusters, X


def integrate(adata, *, batch_key, label_key, params, seed, device) -> IntegrationResult:
    """scCRAFT embedding of ``adata`` (X = log-normalized HVGs); labels are not used, except to
    hold out a novel type (``novel_label``, methods/novel.py: its cells are clustered, sampled and
    trained on only in the ``novel_finetune_epochs`` continuation)."""
    from methods.novel import join_histories, split

    p = check_params(params)
    novel = split(adata, label_key, params, "sccraft", keep_keys=(batch_key,))
    codes, batch_names = _batch_codes(adata, batch_key)
    _check_input(adata.X)
    dev = pick_device(device)
    generator = seed_all(seed)
    triplet_generator = torch.Generator(device=dev)
    triplet_generator.manual_seed(seed + 1)
    n_batches = len(batch_names)
    vae = SCCRAFTVAE(adata.n_vars, n_batches, p["n_latent"]).to(dev)
    disc = make_discriminator(p["n_latent"], n_batches).to(dev)
    generators = (generator, triplet_generator)
    history, epochs, extra, X = train_on(novel.seen_data(adata), codes[novel.seen], vae, disc, p, seed, generators)
    if novel.finetune_epochs:
        more, _, extra_all, X = train_on(adata, codes, vae, disc, p, seed, generators,
                                         epochs=novel.finetune_epochs, first_epoch=epochs)
        history, epochs = join_histories(history, more), epochs + novel.finetune_epochs
        extra["finetune_clusters"] = extra_all
    elif novel.active:  # trained without the held-out type: embed every cell, that type's included
        X = to_device_tensor(adata.X, dev)
    emb = embedding(vae, X, p["latent"], p["pca_dims"], seed)
    extra.update(batches=batch_names, warmup_epochs=p["warmup_epochs"])
    if novel.active:
        extra["novel"] = novel.record()
    if dev.type == "cuda":
        extra["peak_gpu_mb"] = float(torch.cuda.max_memory_allocated(dev)) / 2**20
    return IntegrationResult(embedding=emb, loss_history=history, epochs=epochs, extra=extra)
