"""DAVAE (Hu, Zhong, Shang, Brief Bioinform 2022) as scbean's default DACVAE (specs/models.md 2).

Faithful by default to ``scbean.model.davae`` (mode ``DACVAE``, the conditional model):
- Input log1p(CPM 1e6) computed from ``layers["counts"]`` (scbean normalizes before HVG
  selection over all genes; the preprocessed file keeps only HVG counts, so CPM here is over
  the HVGs), batch one-hot concatenated to the encoder and decoder inputs.
- Encoder (G+k)->128->64->32 (Dense, BatchNorm without scale (Keras momentum 0.99 = torch
  0.01, eps 1e-3), ReLU, dropout 0.1) -> z_mean, z_logvar (5). Decoder (5+k)->32->64->128->G,
  softplus output. Domain classifier z -> gradient reversal -> 16 (BN no scale, ReLU,
  dropout 0.01) -> k, softmax. Keras initialisation (Glorot-uniform kernels, zero biases).
- Loss exactly as coded, per minibatch with w_i = 1 for cells of the first dataset (first
  category of ``obs[batch_key]``) and 0 otherwise: s2 = biased variance of all entries of
  w*(x - x_hat); R_i = mean_g (w*(x - x_hat))^2 * 0.5p/s2 + 0.5p/s2 * log s2;
  KL_i = -0.5 sum(1 + logvar - mu^2 - exp(logvar)); A_i = CE(batch) * p * lambda;
  L = mean_i(R + KL + A), one joint Adam step (lr 0.01, eps 1e-7), batch 128, 20 epochs,
  reshuffled every epoch, last partial minibatch kept (a 1-cell minibatch is skipped: torch
  BatchNorm cannot normalise a single cell, Keras silently can).
- Deviation (documented, always on): a minibatch without a cell of the reference batch is
  skipped (unless ``reconstruct_all_batches``). There w = 0 for every cell, so s2 = 0 and the
  code's loss is 0/0 = NaN; Keras applies that NaN update and the run is lost (scbean's default
  shuffle makes this likely whenever the last partial minibatch is a few cells: ~93 % over 20
  epochs for 3 cells of two balanced batches). The count is ``extra.skipped_minibatches``.
- Embedding: posterior mean z_mean in inference mode. The loss history also records s2
  (``residual_variance``, epoch mean).

Options for the code-vs-paper differences (defaults = code):
- ``reconstruction``: "code" (the formula above) | "gaussian" (the paper's Gaussian NLL with
  the minibatch variance: 0.5p * (mse/s2 + log s2)).
- ``reconstruct_all_batches``: false (code: only the first dataset is reconstructed) | true.
- ``adversarial_scale_genes``: true (code: CE times the number of genes p) | false (CE * lambda).
- ``reference_batch``: which batch is "the first dataset" (null = first category).
Known approximation: the Keras graph runs the encoder separately for the decoder, classifier and
KL branches (independent dropout masks and noise); here one shared pass feeds all three.

DAVAE as released (scbean) scores the same. ``python benchmarks/bench_davae.py --seeds 0 1 2
--threads 1`` runs scbean 0.5.6 (TensorFlow 2.21, three patches that only let it run) and this port
on the same matrix for 3 seeds. On sim_common3, NMI/ARI were 0.14/0.04 (released) vs 0.18/0.07
(port), against 0.84/0.70 for the unintegrated PCA. On sim_rare they were 0.05/0.00 vs 0.04/0.00
(PCA 0.76/0.57). iLISI was <= 0.04 for both. In both implementations s2 runs away (to 300-600 in
20 epochs) whenever it starts above e, since the code's (0.5p/s2) log s2 falls as s2 grows there.
On sim_common3 that happened for 3/3 released seeds and 2/3 port seeds; on sim_rare it happened
in no run. Details: docs/davae_reference.md.
"""

from __future__ import annotations

import math
import time
from typing import Any

import numpy as np
import torch
from torch import nn

from methods.base import IntegrationResult, ParamError

RECONSTRUCTIONS = ("code", "gaussian")


def _check_params(params: dict[str, Any]) -> dict[str, Any]:
    """Validated, typed copy of the parameters; ParamError names the bad one."""
    out = dict(params)
    for key in ("domain_lambda", "lr", "dropout", "classifier_dropout", "target_sum"):
        try:
            out[key] = float(params[key])
        except (TypeError, ValueError):
            raise ParamError(f"davae: {key} must be a number, got {params[key]!r}") from None
        if not math.isfinite(out[key]) or out[key] < 0:
            raise ParamError(f"davae: {key} must be >= 0, got {params[key]!r}")
    for key in ("lr", "target_sum"):
        if out[key] <= 0:
            raise ParamError(f"davae: {key} must be > 0, got {params[key]!r}")
    for key in ("dropout", "classifier_dropout"):
        if out[key] >= 1:
            raise ParamError(f"davae: {key} must be in [0, 1), got {params[key]!r}")
    for key in ("epochs", "batch_size", "n_latent"):
        value = params[key]
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            if not (isinstance(value, float) and value.is_integer() and value >= 1):
                raise ParamError(f"davae: {key} must be a positive integer, got {value!r}")
        out[key] = int(value)
    if out["batch_size"] < 2:
        raise ParamError(f"davae: batch_size must be >= 2 (BatchNorm), got {params['batch_size']!r}")
    hidden = params["hidden_layers"]
    if (not isinstance(hidden, (list, tuple)) or not hidden
            or not all(isinstance(h, (int, np.integer)) and h > 0 for h in hidden)):
        raise ParamError(f"davae: hidden_layers must be a non-empty list of positive integers, got {hidden!r}")
    out["hidden_layers"] = [int(h) for h in hidden]
    if params["reconstruction"] not in RECONSTRUCTIONS:
        raise ParamError(f"davae: reconstruction must be one of {', '.join(RECONSTRUCTIONS)}; "
                         f"got {params['reconstruction']!r}")
    for key in ("reconstruct_all_batches", "adversarial_scale_genes"):
        if not isinstance(params[key], bool):
            raise ParamError(f"davae: {key} must be true or false, got {params[key]!r}")
    return out


def keras_init(module: nn.Module) -> None:
    """Keras Dense defaults: Glorot-uniform kernels, zero biases (torch's default differs)."""
    for m in module.modules():
        if isinstance(m, nn.Linear):
            nn.init.xavier_uniform_(m.weight)
            nn.init.zeros_(m.bias)


class DACVAE(nn.Module):
    """Conditional VAE with a gradient-reversal domain classifier on z."""

    def __init__(self, n_genes: int, n_batches: int, hidden: list[int], n_latent: int, dropout: float,
                 classifier_dropout: float):
        super().__init__()
        from methods.nn.layers import MLP, GradientReversal, Linear

        bn = dict(norm="batch_no_scale", activation="relu", bn_momentum=0.01, bn_eps=1e-3)
        self.encoder = MLP(n_genes, hidden, n_cov=n_batches, inject_cov="first", dropout=dropout, **bn)
        self.z_mean = Linear(hidden[-1], n_latent)
        self.z_logvar = Linear(hidden[-1], n_latent)
        self.decoder = MLP(n_latent, hidden[::-1], n_genes, n_cov=n_batches, inject_cov="first",
                           dropout=dropout, out_activation="softplus", **bn)
        self.reverse = GradientReversal(1.0)
        self.classifier = MLP(n_latent, [16], n_batches, dropout=classifier_dropout, **bn)
        keras_init(self)

    def encode(self, x: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.encoder(x, b)
        return self.z_mean(h), self.z_logvar(h)


def davae_losses(model: DACVAE, x: torch.Tensor, b_oh: torch.Tensor, b_codes: torch.Tensor,
                 weight: torch.Tensor, p: dict[str, Any]) -> dict[str, torch.Tensor]:
    """Minibatch loss terms (scalars) as scbean computes them (see module docstring)."""
    mu, logvar = model.encode(x, b_oh)
    z = mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)
    x_hat = model.decoder(z, b_oh)
    n_genes = x.shape[1]
    w = torch.ones_like(weight) if p["reconstruct_all_batches"] else weight
    resid = w[:, None] * (x - x_hat)
    s2 = resid.var(unbiased=False)
    mse = (resid ** 2).mean(1)
    if p["reconstruction"] == "code":
        rec = mse * (0.5 * n_genes / s2) + (0.5 * n_genes / s2) * torch.log(s2)
    else:
        rec = 0.5 * n_genes * (mse / s2 + torch.log(s2))
    kl = -0.5 * (1 + logvar - mu ** 2 - torch.exp(logvar)).sum(1)
    ce = nn.functional.cross_entropy(model.classifier(model.reverse(z)), b_codes, reduction="none")
    adv = ce * p["domain_lambda"] * (n_genes if p["adversarial_scale_genes"] else 1.0)
    return {"loss": (rec + kl + adv).mean(), "reconstruction": rec.mean(), "kl": kl.mean(),
            "adversarial": adv.mean(), "domain_ce": ce.mean(), "residual_variance": s2.detach()}


def cpm_log1p(counts, target_sum: float) -> np.ndarray:
    """log1p(counts / library * target_sum), dense float32; cells without counts stay 0."""
    import scipy.sparse as sp

    dense = counts.toarray() if sp.issparse(counts) else np.asarray(counts)
    dense = dense.astype(np.float32, copy=False)
    lib = dense.sum(1, keepdims=True)
    return np.log1p(dense / np.where(lib > 0, lib, 1.0) * target_sum).astype(np.float32)


class DAVAETrainer:
    """Adam and one training step, as ``integrate`` runs them (benchmarks/gpu_check.py times the same
    steps). X: log1p(CPM) on the device; weight: 1 for cells of the reference batch."""

    def __init__(self, model: DACVAE, X: torch.Tensor, b_codes: torch.Tensor, b_oh: torch.Tensor,
                 weight: torch.Tensor, p: dict[str, Any], generator: torch.Generator) -> None:
        from methods.nn.training import LossHistory

        self.model, self.X, self.b_codes, self.b_oh, self.weight, self.p = model, X, b_codes, b_oh, weight, p
        self.generator = generator
        # Keras Adam defaults besides the learning rate: betas (0.9, 0.999), eps 1e-7
        self.opt = torch.optim.Adam(model.parameters(), lr=p["lr"], eps=1e-7)
        self.history = LossHistory()
        self.skipped = 0

    def epoch_minibatches(self) -> list[torch.Tensor]:
        from methods.nn.training import minibatch_indices

        return minibatch_indices(self.X.shape[0], self.p["batch_size"], self.generator, self.X.device)

    def step(self, idx: torch.Tensor) -> None:
        if idx.numel() < 2:
            return
        if not self.p["reconstruct_all_batches"] and not bool(self.weight[idx].any()):
            self.skipped += 1  # no reference cell: s2 = 0 and the loss is NaN (module docstring)
            return
        terms = davae_losses(self.model, self.X[idx], self.b_oh[idx], self.b_codes[idx], self.weight[idx], self.p)
        self.opt.zero_grad(set_to_none=True)
        terms["loss"].backward()
        self.opt.step()
        for term, value in terms.items():
            self.history.add(term, value)

    def end_epoch(self, epoch: int) -> None:
        """The epoch's one host sync (loss means, NaN guard)."""
        from methods.nn.training import check_finite

        check_finite(self.history.end_epoch(), epoch)


def train(model: DACVAE, X: torch.Tensor, b_oh: torch.Tensor, b_codes: torch.Tensor, weight: torch.Tensor,
          p: dict[str, Any], epochs: int, gen: torch.Generator) -> tuple[dict[str, list[float]], int]:
    """Train in place for ``epochs`` on every row of X (a fresh ``DAVAETrainer``: one Keras-default
    Adam); returns the loss history and the number of minibatches skipped for holding no reference cell."""
    from methods.nn.training import progress

    trainer = DAVAETrainer(model, X, b_codes, b_oh, weight, p, gen)
    model.train()
    for epoch in progress(range(1, epochs + 1), "davae", total=epochs):
        for idx in trainer.epoch_minibatches():
            trainer.step(idx)
        trainer.end_epoch(epoch)
    return trainer.history.as_dict(), trainer.skipped


def integrate(adata, *, batch_key, label_key, params, seed, device) -> IntegrationResult:
    """DAVAE embedding (posterior means); labels are used only to hold out a novel type
    (``novel_label``, methods/novel.py: its cells train only in the continuation)."""
    from methods.nn.training import encode_in_batches, one_hot, pick_device, seed_all, to_device_tensor
    from methods.novel import join_histories, split

    p = _check_params(params)
    if "counts" not in adata.layers:
        raise ValueError("davae needs raw counts in layers['counts'] (missing)")
    if batch_key not in adata.obs:
        raise ValueError(f"obs['{batch_key}'] (batch) is missing")
    novel = split(adata, label_key, params, "davae", keep_keys=(batch_key,))
    batch = adata.obs[batch_key]
    if not hasattr(batch, "cat"):
        batch = batch.astype(str).astype("category")
    cats = [str(c) for c in batch.cat.categories]
    codes = batch.cat.codes.to_numpy().astype(np.int64)
    if (codes < 0).any():
        raise ValueError(f"obs['{batch_key}'] (batch) has {int((codes < 0).sum())} missing values")
    reference = cats[0] if p["reference_batch"] is None else str(p["reference_batch"])
    if reference not in cats:
        raise ParamError(f"davae: reference_batch {reference!r} is not a batch; batches: {', '.join(cats)}")
    dev = pick_device(device)
    gen = seed_all(seed)
    X = to_device_tensor(cpm_log1p(adata.layers["counts"], p["target_sum"]), dev)
    if not bool(torch.isfinite(X).all()):
        raise ValueError("layers['counts'] gives NaN/inf after log1p(CPM): check for negative or NaN counts")
    b_codes = torch.as_tensor(codes, device=dev)
    b_oh = one_hot(codes, len(cats), device=dev)
    weight = (b_codes == cats.index(reference)).to(torch.float32)
    model = DACVAE(X.shape[1], len(cats), p["hidden_layers"], p["n_latent"], p["dropout"],
                   p["classifier_dropout"]).to(dev)
    # the first phase's cells: all, or all but the held-out type (a view then, not a copy)
    seen = torch.as_tensor(np.flatnonzero(novel.seen), device=dev) if novel.active else slice(None)
    t0 = time.perf_counter()
    history, skipped = train(model, X[seen], b_oh[seen], b_codes[seen], weight[seen], p, p["epochs"], gen)
    epochs = p["epochs"]
    if novel.finetune_epochs:
        more, more_skipped = train(model, X, b_oh, b_codes, weight, p, novel.finetune_epochs, gen)
        history, epochs, skipped = join_histories(history, more), epochs + novel.finetune_epochs, skipped + more_skipped
    train_s = time.perf_counter() - t0
    emb = encode_in_batches(lambda x, b: model.encode(x, b)[0], X, b_oh, module=model)
    extra = {"train_s": train_s, "s_per_epoch": train_s / epochs, "reference_batch": reference,
             "skipped_minibatches": skipped, "device": str(dev)}
    if novel.active:
        extra["novel"] = novel.record()
    return IntegrationResult(embedding=emb, loss_history=history, epochs=epochs, extra=extra)
